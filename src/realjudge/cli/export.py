"""`realjudge export BUNDLE --onnx`: the network as an ONNX graph, checked against torch."""

from __future__ import annotations

import click

from ..errors import UsageError


@click.command("export")
@click.argument("bundle")
@click.option("--onnx", "to_onnx", is_flag=True, help="Export to ONNX (the one format so far; needs the onnx extra).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write a complete bundle copy with model.onnx into this folder.")
@click.option("--opset", type=click.IntRange(13, 20), default=17, show_default=True,
              help="ONNX opset to export at (20 is the most the TorchScript exporter writes).")
@click.option("--tolerance", type=click.FloatRange(0, None), default=1e-4, show_default=True,
              help="Largest |logit difference| to torch that the check accepts.")
@click.option("--check-on", "check_on", multiple=True, type=click.Path(exists=True),
              help="Images or folders whose views the check also scores (repeatable).")
def command(bundle, to_onnx, out, opset, tolerance, check_on):
    """Export BUNDLE (a shipped detector name, a bundle folder or zip) for another runtime.

    --onnx writes model.onnx: the network from the normalised N x 3 x S x S float input to the logit,
    dynamic batch. Before it is kept, ONNX Runtime and torch score the same views (generated ones,
    plus those of --check-on images) and the largest |logit difference| must be at most --tolerance;
    bundle.json's `onnx` entry records the file's sha256, the opset and that check.

    Where it goes: with --out, a complete bundle copy in that folder; without, into the bundle folder
    itself, except for a shipped bundle (inside the installed package), a zip or a folder you cannot
    write: those go to the cache ($REALJUDGE_CACHE/onnx, default ~/.cache/realjudge/onnx), where
    `detect --runtime onnx` finds them. Exit code 3 when the check fails (nothing is written).
    """
    from ..onnx_bundle import export_bundle

    if not to_onnx:
        raise UsageError("choose a format to export to: --onnx (the only one so far)")
    path, entry = export_bundle(bundle, out, opset=opset, tolerance=tolerance, images=check_on)
    check = entry["check"]
    size = path.stat().st_size / 1e6
    click.echo(f"wrote {path} (opset {entry['opset']}, {size:.1f} MB, sha256 {entry['sha256'][:12]})")
    click.echo(f"check: largest |logit difference| to torch {check['max_abs_logit_diff']:.2e} over {check['views']} "
               f"views in batches of {', '.join(map(str, check['batch_sizes']))} (tolerance {check['tolerance']:g}): passed")
    click.echo(f"use it: realjudge detect --model {out or bundle} --runtime onnx ...")
