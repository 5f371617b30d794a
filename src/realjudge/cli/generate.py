"""`realjudge generate`: build CIFAKE-style data sets.

`realjudge generate --model M --out DIR` makes fake images with a diffusers text-to-image pipeline;
`realjudge generate real --cifar10 ARCHIVE --out DIR` writes the matching real CIFAR-10 images.
Both fill `DIR/<split>/FAKE|REAL/` and `DIR/manifest.csv`, and both resume: rerun the same command.
"""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from .exit_codes import EXIT_OK, EXIT_PARTIAL

_FILTERS = "nearest, bilinear, bicubic, lanczos, box"


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


@click.group("generate", invoke_without_command=True, no_args_is_help=True)
@click.option("--model", default="CompVis/stable-diffusion-v1-4", show_default=True,
              help="Diffusers pipeline folder, or a hub id already in the local Hugging Face cache (never downloaded).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Data set folder (required).")
@click.option("--classes", default="cifar10", show_default=True, help="'cifar10', or a file with one class name per line.")
@click.option("--per-class", type=click.IntRange(1), default=100, show_default=True, help="Images per class.")
@click.option("--size", type=click.IntRange(1), default=32, show_default=True, help="Side of the saved square images.")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False), default=None,
              help="File of prompt templates, one per line, with {cls} (and optional {a}, {modifier}).")
@click.option("--steps", type=click.IntRange(1), default=50, show_default=True, help="Denoising steps.")
@click.option("--guidance", type=click.FloatRange(min=0), default=7.5, show_default=True,
              help="Classifier-free guidance scale.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Base seed; each image's seed derives from it, its class and index.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Prompts per pipeline call.")
@click.option("--format", "fmt", type=click.Choice(["jpeg", "png"]), default="jpeg", show_default=True)
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=75, show_default=True, help="75 matches CIFAKE.")
@click.option("--filter", "filter_name", default="lanczos", show_default=True, help=f"Downscaling filter: {_FILTERS}.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--dtype", type=click.Choice(["auto", "float16", "bfloat16", "float32"]), default="auto", show_default=True,
              help="auto: float16 on CUDA, float32 elsewhere.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when it is a terminal).")
@click.pass_context
def command(ctx, model, out_dir, classes, per_class, size, prompts_file, steps, guidance, seed, batch_size, fmt,
            jpeg_quality, filter_name, split, device, dtype, progress):
    """Generate fake images for a CIFAKE-style data set (OUT/<split>/FAKE + OUT/manifest.csv).

    Resumable: existing images are kept and only missing ones are made, from the same per-image
    seeds. The safety checker is off (it would put black squares into the data set). See
    docs/GENERATE.md; `realjudge generate real --help` for the real CIFAR-10 half.
    """
    if ctx.invoked_subcommand is not None:
        return
    if out_dir is None:
        raise UsageError("generate: --out DIR is required")
    from ..generate.diffusion import FakeSettings, generate_fakes
    from ..generate.prompts import load_classes, load_templates

    settings = FakeSettings(out=out_dir, model=model, classes=load_classes(classes), templates=load_templates(prompts_file),
                            per_class=per_class, size=size, steps=steps, guidance=guidance, seed=seed,
                            batch_size=batch_size, fmt=fmt, jpeg_quality=jpeg_quality, filter=filter_name, split=split,
                            device=device, dtype=dtype)
    summary = generate_fakes(settings, progress=_show_progress(progress))
    click.echo(f"{summary.folder}: {summary.written} images generated, {summary.kept} already there"
               + (f" ({summary.rows_added_for_kept} of them added to the manifest)" if summary.rows_added_for_kept else ""))
    click.echo(f"manifest: {summary.manifest}")
    for line in summary.failed:
        click.echo(f"realjudge: failed: {line}", err=True)
    sys.exit(EXIT_PARTIAL if summary.failed else EXIT_OK)


@command.command("real")
@click.option("--cifar10", "archive", required=True, type=click.Path(),
              help="Local copy of the official cifar-10-python.tar.gz (or its extracted cifar-10-batches-py folder).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Data set folder.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="train: data_batch_1..5 (5000 per class); test: test_batch (1000 per class).")
@click.option("--per-class", type=click.IntRange(1), default=None, help="First N images of each class (default: all).")
@click.option("--format", "fmt", type=click.Choice(["jpeg", "png"]), default="jpeg", show_default=True)
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=75, show_default=True, help="75 matches CIFAKE.")
def real(archive, out_dir, split, per_class, fmt, jpeg_quality):
    """Write real CIFAR-10 images as OUT/<split>/REAL with CIFAKE names (pickles read safely, no code run)."""
    from ..generate.cifar import export_cifar10

    summary = export_cifar10(archive, out_dir, split=split, per_class=per_class, fmt=fmt, jpeg_quality=jpeg_quality)
    click.echo(f"{summary.folder}: {summary.written} images written, {summary.kept} already there")
    click.echo(f"manifest: {summary.manifest}")
