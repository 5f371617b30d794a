"""`realjudge models`: the registered architectures and the shipped detectors."""

from __future__ import annotations

import json

import click


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json):
    """List architectures and shipped detectors with their calibrated thresholds."""
    from ..bundle import SHIPPED_DIR, shipped_names
    from ..models.registry import get_entry, list_models

    shipped = []
    for name in shipped_names():
        meta = json.loads((SHIPPED_DIR / name / "bundle.json").read_text())
        shipped.append({"name": name, "arch": meta["arch"], "threshold": meta["threshold"],
                        "input": meta["input_policy"], "val_accuracy": meta.get("val_metrics", {}).get("accuracy")})
    archs = [{"name": n, "description": get_entry(n).description, "input": get_entry(n).policy.to_json()} for n in list_models()]
    if as_json:
        click.echo(json.dumps({"shipped": shipped, "architectures": archs}, indent=2))
        return
    click.echo("shipped detectors:")
    for s in shipped:
        acc = s["val_accuracy"]
        click.echo(f"  {s['name']:<12} {s['arch']:<12} threshold {s['threshold']:.4f}  "
                   f"validation accuracy {acc if acc is None else f'{acc:.4f}'}")
    click.echo("architectures:")
    for a in archs:
        click.echo(f"  {a['name']:<12} {a['description']}")
