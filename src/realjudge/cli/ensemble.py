"""`realjudge ensemble`: combine trained bundles into one detector, calibrated on validation."""

from __future__ import annotations

import sys

import click

from ..calibrate import THRESHOLD_RULES
from .options import card_option, read_card


@click.command("ensemble")
@click.argument("bundles", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the ensemble bundle.")
@click.option("--name", default="ensemble", show_default=True, help="Detector name recorded in the bundle.")
@click.option("--data", multiple=True, help="Labelled sources for the validation split (default: the first member's training sources).")
@click.option("--min-real-accuracy", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Raise the threshold until this share of validation reals is called real.")
@click.option("--threshold-rule", type=click.Choice(THRESHOLD_RULES), default="balanced", show_default=True,
              help="balanced: best balanced accuracy (raised to --min-real-accuracy); real_accuracy: exactly the "
                   "threshold that keeps --min-real-accuracy of validation reals real.")
@card_option()
@click.option("--progress/--no-progress", default=None)
def command(bundles, out_dir, name, data, min_real_accuracy, threshold_rule, card_file, progress):
    """Average the logits of BUNDLES (two or more, same input policy and validation split) and
    calibrate the result on their validation split."""
    from ..bundle import load_bundle
    from ..train.stacking import combine

    show = sys.stderr.isatty() if progress is None else progress
    out = combine(list(bundles), out_dir, name, list(data) or None, show, min_real_accuracy, read_card(card_file),
                  threshold_rule)
    m = load_bundle(out)[1].meta["val_metrics"]
    click.echo(f"bundle: {out}")
    click.echo(f"validation: accuracy {m['accuracy']:.4f}, AUC {m['roc_auc']:.4f}, uncertain share {m['uncertain_share']:.4f}")

