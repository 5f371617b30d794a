"""`realjudge explain IMAGE... --out DIR`: a heat-map overlay PNG per image, showing where the evidence lies."""

from __future__ import annotations

import sys

import click

from .options import threshold_option
from .exit_codes import EXIT_OK, EXIT_PARTIAL


@click.command("explain")
@click.argument("images", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the overlay PNGs.")
@click.option("--model", "-m", default=None, help="Shipped detector name or bundle path (default: picked by image size).")
@click.option("--method", type=click.Choice(["gradcam", "gradcam++", "occlusion"]), default="gradcam", show_default=True)
@threshold_option("Decision threshold (default: the bundle's).")
@click.option("--device", default="auto", show_default=True)
def command(images, out_dir, model, method, threshold, device):
    """Write `<name>.<method>.png` per image: the input enlarged to >= 256 px with the map blended on it.

    The map shows the evidence for the detector's verdict (fake or real). Exit code 1 when some
    images could not be read.
    """
    from ..explain.writer import OverlayWriter
    from ._inputs import open_inputs

    samples, missing, router = open_inputs(images, model, device, threshold)
    writer = OverlayWriter(out_dir, method)
    failed = 0
    for rec, prepared in router.predict_samples(samples, workers=0, keep_pixels=True):
        if rec.error:
            failed += 1
            click.echo(f"realjudge: error: {rec.error}", err=True)
            continue
        path = writer.write(router, rec, prepared)
        click.echo(f"{rec.verdict:<9}  {rec.p_fake:6.4f}  {rec.path}  [{rec.model}]  -> {path}  ({writer.last_explained})")
    sys.exit(EXIT_PARTIAL if failed or missing else EXIT_OK)
