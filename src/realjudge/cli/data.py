"""`realjudge data audit SOURCE...`: can format, size and compression alone separate the classes?"""

from __future__ import annotations

import json

import click


@click.group("data")
def command() -> None:
    """Inspect training and evaluation data."""


@command.command("audit")
@click.argument("sources", nargs=-1)
@click.option("--real", "reals", multiple=True, help="A source whose images are all real (unlabelled folder). Repeatable.")
@click.option("--fake", "fakes", multiple=True, help="A source whose images are all fake. Repeatable.")
@click.option("--layout", default="auto", show_default=True, help="Data layout (auto-detected by default).")
@click.option("--limit", type=click.IntRange(2), default=None, help="Audit at most this many files per class (random).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the full result as JSON.")
@click.option("--align", "align_out", type=click.Path(file_okay=False), default=None,
              help="Write a copy where both classes are re-encoded identically (centre crop, one JPEG quality).")
@click.option("--crop", type=click.IntRange(8), default=256, show_default=True, help="--align: centre crop size (no resampling).")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True, help="--align: JPEG quality.")
def audit_command(sources, reals, fakes, layout, limit, json_out, align_out, crop, quality):
    """Per class: file format, size, JPEG quality, aspect ratio; warns when these alone separate the classes."""
    from ..data.audit import align, audit, format_report
    from ..evaluate.run import load_labelled

    samples = load_labelled(list(sources), layout, reals, fakes, "audited data")
    result = audit(samples, limit)
    click.echo(format_report(result), nl=False)
    for e in result["errors"]:
        click.echo(f"realjudge: error: {e}", err=True)
    if align_out:
        done = align(samples, align_out, crop, quality)
        result["align"] = done
        aligned = audit(load_labelled([align_out], "manifest"), limit)
        result["aligned_audit"] = aligned
        click.echo(f"aligned copy: {done['written']} images in {align_out} ({done['skipped_smaller_than_crop']} smaller "
                   f"than {crop} px left out); audit of the copy:")
        click.echo(format_report(aligned), nl=False)
    if json_out:
        with open(json_out, "w") as f:
            json.dump(result, f, indent=2, default=float)
    if result["n_errors"]:
        import sys

        sys.exit(1)  # like detect: the rest was audited, some files could not be read


def _reals(sources, layout):
    from ..data.layouts import open_source
    from ..errors import SourceError

    samples = []
    for src in sources:
        samples += open_source(src, layout)
    if not any(s.label in (0, None) for s in samples):
        raise SourceError(f"no real photographs in {', '.join(sources)} (labelled fakes are never reconstructed)")
    return samples


def _finish(skipped: list[str]) -> None:
    import sys

    for line in skipped:
        click.echo(f"realjudge: skipped {line}", err=True)
    if skipped:
        sys.exit(1)


@command.command("synthesize")
@click.argument("reals", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the pairs and manifest.csv.")
@click.option("--decoder", "decoders", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A trained decoder folder (repeatable; default: every shipped decoder unless --vae is given).")
@click.option("--vae", "vaes", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A local diffusers AutoencoderKL folder, e.g. a Stable Diffusion or Flux VAE (repeatable).")
@click.option("--per-real", type=click.IntRange(1), default=None, help="Reconstructions per photograph, rotating over the decoders (default: all).")
@click.option("--crop", type=click.IntRange(8), default=None, help="Centre-crop both members to this size first (no resampling).")
@click.option("--max-side", type=click.IntRange(8), default=None, help="Downscale both members to this longest side first (Lanczos).")
@click.option("--encode", "encode_spec", default="png", show_default=True, help="png (lossless) or jpeg:QUALITY, for both members alike.")
@click.option("--match-sharpness/--no-match-sharpness", default=True, show_default=True,
              help="Also write each photograph blurred to its reconstruction's sharpness, labelled real.")
@click.option("--layout", default="auto", show_default=True, help="Data layout of the inputs (auto-detected by default).")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
def synthesize_command(reals, out_dir, decoders, vaes, per_real, crop, max_side, encode_spec, match_sharpness, layout, threads):
    """Fakes made from real photographs: each photo and its reconstructions through autoencoders, paired.

    Labelled fakes in the inputs are ignored; every written pair is encoded alike, and manifest.csv
    groups a pair with its original photograph so that splits never separate them."""
    import torch

    from ..synthesize.pairs import parse_encode, synthesize
    from ..synthesize.reconstruct import reconstructors

    parse_encode(encode_spec)  # a bad value fails before any model loads
    if threads:
        torch.set_num_threads(threads)
    samples = _reals(list(reals), layout)
    done = synthesize(samples, out_dir, reconstructors(decoders, vaes), per_real, crop, max_side, encode_spec,
                      match_sharpness)
    click.echo(f"{done['reals']} photographs, {done['fakes']} reconstructions ({', '.join(done['reconstructors'])}), "
               f"{done['matched_reals']} sharpness-matched real copies -> {out_dir}/manifest.csv")
    _finish(done["skipped"])


@command.command("train-decoders")
@click.argument("reals", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="One decoder folder per spec goes here.")
@click.option("--spec", "specs", multiple=True,
              help="UPSAMPLE-fFACTOR-cLATENT, e.g. nearest-f8-c16 (repeatable; default: the shipped set).")
@click.option("--steps", type=click.IntRange(1), default=500, show_default=True, help="Training steps per decoder.")
@click.option("--layout", default="auto", show_default=True, help="Data layout of the inputs (auto-detected by default).")
@click.option("--seed", type=int, default=0, show_default=True)
def train_decoders_command(reals, out_dir, specs, steps, layout, seed):
    """Train autoencoders with generator-style upsampling on real photographs (for `data synthesize`)."""
    from ..errors import UsageError
    from ..synthesize.decoders import SHIPPED_SPECS, DecoderSpec
    from ..synthesize.fit import train_decoders

    parsed = []
    for spec in specs:
        try:
            up, f, c = spec.split("-")
            parsed.append(DecoderSpec(up, int(f.removeprefix("f")), int(c.removeprefix("c"))))
        except ValueError:
            raise UsageError(f"--spec must look like nearest-f8-c16, got {spec!r}") from None
    skipped: list[str] = []
    try:
        done = train_decoders(_reals(list(reals), layout), out_dir, parsed or list(SHIPPED_SPECS), steps, seed=seed,
                              log=lambda m: click.echo(m, err=True) if ": step " in m or "->" in m else skipped.append(m))
    except ValueError as err:
        raise UsageError(str(err)) from None
    for d in done:
        click.echo(f"{d['name']}: PSNR {d['validation']['psnr_db']} dB, sharpness ratio {d['validation']['sharpness_ratio']}")
    _finish(skipped)
