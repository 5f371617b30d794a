"""`realjudge evaluate SOURCE...`: metrics, per-source/generator breakdown, perturbations, report."""

from __future__ import annotations

import json
import sys

import click

from .options import threshold_option


@click.command("evaluate")
@click.argument("sources", nargs=-1)
@click.option("--real", "reals", multiple=True, help="A source whose images are all real (unlabelled folder). Repeatable.")
@click.option("--fake", "fakes", multiple=True, help="A source whose images are all fake. Repeatable.")
@click.option("--model", "-m", default=None,
              help="Shipped detector name or bundle path (default: picked by image size, like detect).")
@click.option("--layout", default="auto", show_default=True, help="Data layout (auto-detected by default).")
@threshold_option()
@click.option("--perturb", "perturb", multiple=True,
              help="Also score perturbed copies: jpeg[:Q], jpeg_cv2[:Q], webp[:Q], blur[:SIGMA], downscale[:F], "
                   "upscale[:F], crop[:F], noise[:SIGMA], social, or 'all'. Repeatable; a name alone sweeps its range.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Write metrics.json, report.md and figures here.")
@click.option("--device", default="auto", show_default=True)
@click.option("--progress/--no-progress", default=None)
def command(sources, reals, fakes, model, layout, threshold, perturb, out_dir, device, progress):
    """Accuracy, precision, recall, F1, ROC-AUC, AP, real/fake accuracy and the confusion matrix (fake = positive)."""
    from ..detector import load_for_inputs
    from ..evaluate.report import metrics_table, write_report
    from ..evaluate.run import evaluate, load_labelled
    from ..perturb import SWEEPS, parse_perturbation

    specs = list(SWEEPS) if "all" in perturb else list(perturb)
    perts = [p for spec in specs for p in parse_perturbation(spec)]
    samples = load_labelled(list(sources), layout, reals, fakes)
    det = load_for_inputs(model, device=device, threshold=threshold, provenance=False)
    show = sys.stderr.isatty() if progress is None else progress
    result, y, p = evaluate(det, samples, perts, progress=show)
    for e in result["errors"]:
        click.echo(f"realjudge: error: {e}", err=True)
    if result["n_warned"]:
        click.echo(f"realjudge: warning: {result['n_warned']} image(s): {result['warnings'][0]}", err=True)
    if out_dir:
        path = write_report(result, y, p, out_dir)
        from ..evaluate.plots import write_degradation

        write_degradation(result, out_dir)  # per-generator degradation curves: degradation.json + plots
        click.echo(f"report: {path}", err=True)
    rows = {"all": result["overall"]} | {f"source {k}": v for k, v in result["per_source"].items()} \
        | {f"generator {k}": v for k, v in result["per_generator"].items() if not k.startswith("_")} \
        | {f"model {k}": v for k, v in result.get("per_model", {}).items()} \
        | {f"perturb {k}": v for k, v in result.get("perturbations", {}).items()}
    click.echo(metrics_table(rows, "set"), nl=False)
    click.echo(json.dumps({"confusion_matrix": result["overall"]["confusion_matrix"],
                           "threshold": result["overall"]["threshold"], "models": result["models"]}))
    sys.exit(1 if result["n_errors"] else 0)
