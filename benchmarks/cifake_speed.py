"""CIFAKE detectors: validation accuracy against `realjudge detect` throughput, in one run on one machine.

The folder: 20,000 32x32 CIFAKE JPEGs written as they are, all 10,034 validation images of the
shipped detectors' split (sha256 of bytes, fraction 0.1) and 9,966 training images. For every
candidate (a bundle and a runtime) the script runs

    realjudge detect FOLDER --model M --runtime R [--precision float32] --format jsonl --no-progress

as a user would, and measures its wall time, start-up included. Its accuracy is read from the
records that command printed, on the validation images alone: fake when p_fake >= the bundle's
threshold, which was chosen on that same validation split (there is no CIFAKE test split here).

In the same run:
- decode floor: what `detect` does to an image besides the model (read, decode, provenance, the
  input policy's views: `realjudge.pipeline.prepare`), in this one process;
- model floor: each candidate's model step alone (`Detector.logits`) on the already-decoded views;
- start-up: `realjudge detect` on one file;
- the trivial sharpness score (mean |Laplacian|, no training; its threshold fitted on the folder's
  training images), in the library: a detector that only learned "smoother means fake" scores this.

    python benchmarks/cifake_speed.py [--n 20000] [--bundle LABEL=PATH ...] [--no-docs]

Writes docs/cifake/speed.json, docs/img/cifake_speed.png, and the `cifake-speed` sections of
docs/CIFAKE.md and docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import DOCS, SHARED_DATA, best_of, write_section

DATA = SHARED_DATA / "cifake-train.tar.gz"
TARGET_IPS = 1000
SHIPPED = (("cifake", "cifake"), ("cifake-accurate", "cifake-accurate"))


def build_folder(out: Path, n: int, val_fraction: float = 0.1) -> dict[str, int]:
    """The validation images of the split (at most n/2 of each class: all of them at the default n), then
    training images up to `n` files; {path: label} of the validation images (1 = fake)."""
    from realjudge.data.samples import is_validation

    labels, room = {}, {"REAL": n // 2, "FAKE": n - n // 2}
    train: dict[str, list[tuple[Path, bytes]]] = {"REAL": [], "FAKE": []}
    with tarfile.open(DATA, "r:gz") as tf:
        for m in tf:
            cls = m.name.split("/")[-2] if m.isfile() else None
            if cls not in room:
                continue
            data = tf.extractfile(m).read()
            if is_validation(hashlib.sha256(data).hexdigest(), val_fraction):
                if room[cls] > 0:
                    room[cls] -= 1
                    dest = out / "val" / cls / Path(m.name).name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(data)
                    labels[str(dest)] = int(cls == "FAKE")
            elif len(train[cls]) < n:
                train[cls].append((out / "train" / cls / Path(m.name).name, data))
    rest = n - len(labels)  # half real, half fake
    for dest, data in train["REAL"][:rest // 2] + train["FAKE"][:rest - rest // 2]:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return labels


def run_detect(folder: Path, model: str, runtime: str, precision: str = "bundle") -> tuple[float, list[dict]]:
    cmd = [sys.executable, "-m", "realjudge", "detect", str(folder), "--model", model, "--runtime", runtime,
           "--format", "jsonl", "--no-progress"] + (["--precision", precision] if precision != "bundle" else [])
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return seconds, [json.loads(line) for line in proc.stdout.splitlines()]


def accuracy(records: list[dict], labels: dict[str, int]) -> dict:
    from realjudge.metrics import binary_metrics

    rows = [(labels[r["path"]], r["p_fake"]) for r in records if r["path"] in labels]
    if len(rows) != len(labels) or any(p is None for _, p in rows):
        raise SystemExit(f"{len(rows)} scored validation records for {len(labels)} validation images")
    y = np.array([a for a, _ in rows])
    p = np.array([b for _, b in rows])
    t = records[0]["threshold"]
    m = binary_metrics(y, p, t)
    uncertain = np.mean([r["verdict"] == "uncertain" for r in records if r["path"] in labels])
    return {"accuracy": m["accuracy"], "roc_auc": m["roc_auc"], "threshold": t, "uncertain_share": float(uncertain),
            "errors": int(round((1 - m["accuracy"]) * len(y))), "n_val": len(y)}


def model_floor(det, views: np.ndarray, repeats: int) -> float:
    det.logits(views[:256])  # warm-up: the first batch folds batch norm, ONNX Runtime plans its kernels
    t = best_of(repeats, lambda: [det.logits(views[i:i + 256]) for i in range(0, len(views), 256)])
    return t


def sharpness_row(samples, labels: dict[str, int]) -> dict:
    """Mean |Laplacian| as a fake score (smoother = faker); threshold of best accuracy on the training images."""
    from realjudge.metrics import binary_metrics
    from realjudge.sharpness import sharpness_fake_scores

    t = time.perf_counter()
    ts, ys = sharpness_fake_scores([s for s in samples if s.locator not in labels])
    val, yv = sharpness_fake_scores([s for s in samples if s.locator in labels])
    seconds = time.perf_counter() - t
    best = max(np.unique(ts), key=lambda c: np.mean((ts >= c) == ys))
    m = binary_metrics(yv, val, best)
    return {"accuracy": m["accuracy"], "roc_auc": m["roc_auc"], "ips_library": len(samples) / seconds}


def recipe(meta: dict) -> dict:
    """How a bundle was trained, from its own record: epochs and seconds of its last run, what it
    started from and what it was distilled from (an ensemble: its members')."""
    if meta["arch"] == "ensemble":
        members = [recipe({"arch": m["arch"], "training": m["training"], "training_config": m["training_config"]})
                   for m in meta["training"]["members"]]
        return {"text": "mean logit of " + "; ".join(m["text"] for m in members),
                "seconds": sum(m["seconds"] for m in members)}
    cfg, hist = meta.get("training_config", {}), meta.get("training", {}).get("history", [])
    from realjudge.precision import RECORDED_DEFAULT, canonical

    parts = [f"{len(hist)} epochs", f"trained in {canonical(cfg.get('precision', RECORDED_DEFAULT))}"]
    if cfg.get("init_from"):
        parts.append(f"from `{cfg['init_from']}`")
    if cfg.get("distill_from"):
        parts.append(f"distilled from {', '.join(f'`{d}`' for d in cfg['distill_from'])} "
                     f"(weight {cfg.get('distill_weight')})")
    return {"text": ", ".join(parts), "seconds": sum(h.get("seconds", 0) for h in hist)}


def plot(rows: list[dict], out: Path, cpu_count: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7, 4.2))
    bundles = list(dict.fromkeys(r["bundle"] for r in rows))
    markers = {"torch": "o", "torch-float32": "s", "onnx": "^"}
    for r in rows:  # colour: the bundle; marker: how its model step ran
        ax.scatter(r["detect_ips"], 100 * r["accuracy"], s=45, color=f"C{bundles.index(r['bundle'])}",
                   marker=markers.get(r["runtime"], "x"), label=f"{r['bundle']} ({r['runtime']})")
    ax.legend(fontsize=7, loc="lower left")
    ax.axvline(TARGET_IPS, ls="--", color="grey", lw=1)
    ax.set(xscale="log", xlabel="realjudge detect, images/s end to end (log)", ylabel="validation accuracy (%)",
           title=f"CIFAKE: accuracy against throughput ({cpu_count} CPU cores)")
    lo, hi = ax.get_xlim()  # round numbers of images/s, not powers of ten
    ax.set_xticks([t for t in (100, 200, 500, 1000, 2000, 5000, 10000, 20000) if lo <= t <= hi])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--bundle", action="append", default=[], metavar="LABEL=PATH",
                    help="another candidate bundle (e.g. a training run's bundle); repeatable")
    ap.add_argument("--runtimes", default="torch,torch-float32,onnx",
                    help="torch (at the bundle's precision), torch-float32 (only for bundles calibrated at another "
                         "precision), onnx")
    ap.add_argument("--repeats", type=int, default=2, help="model floor: best of this many passes")
    ap.add_argument("--floor-images", type=int, default=4000, help="model floor: images of the folder it scores")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--from-json", action="store_true", help="rewrite the docs from docs/cifake/speed.json, measuring nothing")
    args = ap.parse_args()
    if args.from_json:
        result = json.loads((DOCS / "cifake" / "speed.json").read_text())
        plot(result["candidates"], DOCS / "img" / "cifake_speed.png", result["cpu_count"])
        return write_docs(result)

    import torch

    import realjudge
    from realjudge.data.inputs import expand_inputs
    from realjudge.pipeline import prepare
    from realjudge.precision import resolve as resolve_precision
    from realjudge.router import Router
    from realjudge.runtime import library_versions

    candidates = list(SHIPPED) + [tuple(b.split("=", 1)) for b in args.bundle]
    runtimes = args.runtimes.split(",")
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cifake20k"
        labels = build_folder(folder, args.n)
        samples, _ = expand_inputs([str(folder)])
        assert len(samples) == args.n, len(samples)
        for s in samples:  # a plain folder carries no labels: the class is the file's folder
            s.label = int(Path(s.locator).parent.name == "FAKE")

        start_seconds, _ = run_detect(Path(samples[0].locator), "cifake", "torch")
        router = Router.single(realjudge.load("cifake", device="cpu"))
        t = time.perf_counter()
        prepared = [prepare(s, s.locator, router) for s in samples]
        decode_ips = len(samples) / (time.perf_counter() - t)
        views = np.concatenate([p.views for p in prepared])

        rows = []
        for label, model in candidates:
            for mode in runtimes:
                runtime, _, forced = mode.partition("-")
                det = realjudge.load(model, device="cpu", runtime=runtime, precision=forced or "bundle")
                if forced and resolve_precision("bundle", det.info.precision, torch.device("cpu"))[0] == forced:
                    continue  # the same as its torch row
                n_views = len(det.policy.test_time_views(views[:1]))
                some = views[:args.floor_images]  # the floor is a rate: a share of the images measures it
                all_views = np.concatenate(det.policy.test_time_views(some)) if n_views > 1 else some
                floor = len(some) / model_floor(det, all_views, args.repeats)
                seconds, records = run_detect(folder, model, runtime, forced or "bundle")
                row = {"label": f"{label} ({mode})", "bundle": label, "runtime": mode, "arch": det.info.arch,
                       "arch_kwargs": det.info.arch_kwargs, "recipe": recipe(det.info.meta),
                       "params": sum(p.numel() for p in det.model.parameters()), "views": n_views,
                       "precision": det.precision if runtime == "torch" else "float32",
                       "model_floor_ips": floor, "detect_seconds": seconds, "detect_ips": len(samples) / seconds}
                row |= accuracy(records, labels)
                rows.append(row)
                print(json.dumps(row), flush=True)
        sharp = sharpness_row(samples, labels)

    result = {"n": args.n, "n_val": len(labels), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_average_at_start": load_avg, "decode_floor_ips": decode_ips, "startup_seconds": start_seconds,
              "candidates": rows, "sharpness": sharp, "versions": library_versions(), "bundles": args.bundle}
    print(json.dumps({k: v for k, v in result.items() if k != "candidates"}, indent=2, default=float))
    if args.no_docs:
        return
    (DOCS / "cifake").mkdir(parents=True, exist_ok=True)
    (DOCS / "cifake" / "speed.json").write_text(json.dumps(result, indent=2, default=float))
    plot(rows, DOCS / "img" / "cifake_speed.png", result["cpu_count"])
    write_docs(result)


def reading(rows: list[dict]) -> str:
    """What the table says about the targets: 1,000 img/s for the default, within 0.2 points of the best."""
    best = max(rows, key=lambda r: r["accuracy"])
    fast = [r for r in rows if r["detect_ips"] >= TARGET_IPS]
    lines = [f"The most accurate candidate is `{best['bundle']}` ({100 * best['accuracy']:.2f}%, "
             f"{best['detect_ips']:,.0f} img/s with {best['runtime']})."]
    if fast:
        top = max(fast, key=lambda r: (r["accuracy"], r["detect_ips"]))
        gap = 100 * (best["accuracy"] - top["accuracy"])
        lines.append(f"The most accurate at {TARGET_IPS:,} img/s or more is `{top['bundle']}` with {top['runtime']} "
                     f"({100 * top['accuracy']:.2f}%, {top['detect_ips']:,.0f} img/s): {gap:.2f} points below the best, "
                     f"{'within' if gap <= 0.2 else 'outside'} the 0.2-point target.")
    else:
        lines.append(f"No candidate reaches {TARGET_IPS:,} img/s end to end.")
    return " ".join(lines)


def sharpness_reading(sharp: dict) -> str:
    direction = ("the fakes are, if anything, the sharper images here, so \"smoother means fake\" does worse than chance"
                 if sharp["roc_auc"] < 0.5 else "smoothness alone separates the classes this well")
    return (f"The sharpness score reaches {100 * sharp['accuracy']:.2f}% at its best threshold on the training images "
            f"(ROC-AUC {sharp['roc_auc']:.3f}): {direction}; the detectors do not owe their accuracy to it.")


def write_docs(result: dict) -> None:
    rows = result["candidates"]
    lines = ["| candidate | architecture | parameters | views | precision | validation accuracy | errors | AUC | uncertain | "
             "model floor (img/s) | `detect` (img/s) | `detect` / model floor |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| `{r['bundle']}` ({r['runtime']}) | {r['arch']} | {r['params']:,} | {r['views']} | "
                     f"{r.get('precision', 'float32')} | "
                     f"{100 * r['accuracy']:.2f}% | {r['errors']} | {r['roc_auc']:.4f} | {100 * r['uncertain_share']:.1f}% | "
                     f"{r['model_floor_ips']:,.0f} | {r['detect_ips']:,.0f} | {r['detect_ips'] / r['model_floor_ips']:.2f} |")
    s = result["sharpness"]
    lines.append(f"| mean \\|Laplacian\\| (no training; library, no CLI) | - | 0 | 1 | - | {100 * s['accuracy']:.2f}% | "
                 f"{round((1 - s['accuracy']) * result['n_val'])} | {s['roc_auc']:.4f} | - | - | {s['ips_library']:,.0f} | - |")
    made = ["| candidate | architecture | how it was trained (its bundle's record) | training seconds |", "| --- | --- | --- | --- |"]
    for r in rows:
        if r["runtime"] == rows[0]["runtime"]:
            kw = r["arch_kwargs"] if r["arch"] != "ensemble" else {"members": len(r["arch_kwargs"]["members"])}
            made.append(f"| `{r['bundle']}` | {r['arch']} {json.dumps(kw)} | {r['recipe']['text']} | {r['recipe']['seconds']:,.0f} |")
    extra = " ".join(f"--bundle {b}" for b in result.get("bundles", []))
    fast = [r for r in rows if r["bundle"] == "cifake"]
    best_fast = max(fast, key=lambda r: r["detect_ips"]) if fast else None
    body = f"""## Accuracy against throughput (`cifake-speed`)

Command: `python benchmarks/cifake_speed.py{' ' + extra if extra else ''}` ({result['cpu_count']} CPU cores,
{result['torch_threads']} torch threads; 1-minute load average {result['load_average_at_start']:.2f} at the start).
Every candidate ran `realjudge detect` over the same {result['n']:,}-file folder of 32x32 CIFAKE JPEGs,
wall time with start-up ({result['startup_seconds']:.1f} s on one file); accuracy on its
{result['n_val']:,} validation images, at the bundle's threshold chosen on the same split.

| floor | images/s |
| --- | --- |
| decode (read, decode, provenance, views; one process) | {result['decode_floor_ips']:,.0f} |

{chr(10).join(lines)}

![accuracy against images/s](img/cifake_speed.png)

{chr(10).join(made)}

Target: at least {TARGET_IPS:,} images/s end to end for the default small-image detector: """ + (
        f"**{'met' if best_fast['detect_ips'] >= TARGET_IPS else 'missed'}** "
        f"(`cifake`, {best_fast['runtime']}: {best_fast['detect_ips']:,.0f} img/s)." if best_fast else "no `cifake` row.") + \
        "\n\n" + reading(rows) + " " + sharpness_reading(result["sharpness"]) + \
        (" " + result["sharpness_note"] if result.get("sharpness_note") else "") + "\n"
    write_section("CIFAKE.md", "cifake-speed", body)
    write_section("RESULTS.md", "cifake-speed", body)


if __name__ == "__main__":
    main()
