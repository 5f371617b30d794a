"""`realjudge models`: the registered architectures and the shipped detectors."""

from __future__ import annotations

import json

import click


@click.command("models")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(name, as_json):
    """List architectures and shipped detectors; with NAME (a shipped detector or a bundle path),
    print its model card, its calibration (threshold, uncertain band) and its training data."""
    from ..bundle import SHIPPED_DIR, shipped_names

    if name:
        return _show(name, as_json)
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
    width = max(len(r["name"]) for r in shipped + archs)
    click.echo("shipped detectors:")
    for s in shipped:
        acc = s["val_accuracy"]
        click.echo(f"  {s['name']:<{width}} {s['arch']:<{width}} threshold {s['threshold']:.4f}  "
                   f"validation accuracy {acc if acc is None else f'{acc:.4f}'}")
    click.echo("architectures:")
    for a in archs:
        click.echo(f"  {a['name']:<{width}} {a['description']}")


def _show(name: str, as_json: bool) -> None:
    from ..bundle import _read_bundle_files, resolve_bundle_path
    from ..onnx_bundle import describe

    path = resolve_bundle_path(name)
    meta, _weights, card = _read_bundle_files(path)
    cal = meta.get("calibration", {})
    training = meta.get("training") or {}
    data = {k: v for k, v in training.items() if k != "history"} or None
    if as_json:
        click.echo(json.dumps({"name": meta.get("name", name), "path": str(path), "arch": meta.get("arch"),
                               "calibration": cal, "training_data": data, "val_metrics": meta.get("val_metrics", {}),
                               "card": card, "runtimes": {"torch": True, "onnx": describe(path)}}, indent=2, default=str))
        return
    click.echo((card or f"# {name}\n\n(no model card in this bundle)").rstrip() + "\n")
    click.echo("## Calibration (bundle.json)\n")
    band = cal.get("uncertain_band", [None, None])
    click.echo(f"threshold {cal.get('threshold')}  ({cal.get('rule', 'balanced accuracy')}); temperature "
               f"{cal.get('temperature')}; logit offset {cal.get('offset', 0.0)}")
    click.echo(f"uncertain band ({band[0]}, {band[1]})")
    fit = cal.get("band_fit")
    if fit:
        click.echo("band fit: " + ", ".join(f"{k} {v}" for k, v in fit.items()))
    click.echo("\n## Training data\n")
    click.echo(json.dumps(data, indent=2, default=str) if data is not None else "(not recorded in the bundle)")
    click.echo("\n## Runtimes (detect --runtime)\n")
    click.echo("torch: yes")
    click.echo(_onnx_line(describe(path), name))


def _onnx_line(d: dict, name: str) -> str:
    if d["available"]:
        line = (f"onnx: {d['location']} (opset {d['opset']}; largest |logit difference| to torch "
                f"{d['max_abs_logit_diff']:.2e} over {d['check_views']} views, tolerance {d['tolerance']:g})")
    else:
        line = f"onnx: not exported yet ({d['status']}); `realjudge export {name} --onnx` makes it, or --runtime onnx on the fly"
    if d["onnxruntime"] is None:
        line += "; onnxruntime is not installed: pip install 'realjudge[onnx]'"
    return line
