"""`realjudge data audit SOURCE...`: can format, size and compression alone separate the classes?"""

from __future__ import annotations

import json

import click


@click.group("data")
def command() -> None:
    """Inspect training and evaluation data."""


@command.command("audit")
@click.argument("sources", nargs=-1, required=True)
@click.option("--layout", default="auto", show_default=True, help="Data layout (auto-detected by default).")
@click.option("--limit", type=click.IntRange(2), default=None, help="Audit at most this many files per class (random).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the full result as JSON.")
@click.option("--align", "align_out", type=click.Path(file_okay=False), default=None,
              help="Write a copy where both classes are re-encoded identically (centre crop, one JPEG quality).")
@click.option("--crop", type=click.IntRange(8), default=256, show_default=True, help="--align: centre crop size (no resampling).")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True, help="--align: JPEG quality.")
def audit_command(sources, layout, limit, json_out, align_out, crop, quality):
    """Per class: file format, size, JPEG quality, aspect ratio; warns when these alone separate the classes."""
    from ..data_audit import align, audit, format_report
    from ..evaluate.run import load_labelled

    samples = load_labelled(list(sources), layout)
    result = audit(samples, limit)
    click.echo(format_report(result), nl=False)
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
