"""Choose an ensemble's members and test-time views on their shared validation split.

Each member bundle scores the validation split once per transform (untouched, shifted 1 px left and
right, and the mirror of each) in float32 through the training engine. Every subset of the members
and every view choice (none, mirror, six views) is then recalibrated exactly as training does (the
mean logit of the chosen members and views) and reported: errors, accuracy, ROC-AUC, and the model
step's cost as images/s, estimated from each member's measured views/s on this machine.

    python benchmarks/ensemble_sweep.py BUNDLE BUNDLE [BUNDLE ...] [--no-docs]
    python benchmarks/ensemble_sweep.py --from-json      # rewrite the docs from docs/cifake/ensemble_sweep.json

Run from the repository root (bundles record their training data relative to it). The members
must share one validation split (the same sources and fraction), as `realjudge ensemble` requires.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

import realjudge
from realjudge.preprocess import shift_views
from realjudge.train.batches import load_split
from realjudge.train.config import TrainConfig
from realjudge.train.scoring import calibrated_metrics, predict_logits

from _common import DOCS, load_json, save_json, write_section

STORE = DOCS / "cifake"

SHIFTS = ((0, 0), (1, 0), (-1, 0))
VIEWS = {  # name -> (shifts, mirror)
    "none": (((0, 0),), False),
    "mirror": (((0, 0),), True),
    "six (mirror, 1 px left/right)": (SHIFTS, True),
}


def score_member(det, val) -> tuple[dict, float]:
    """{(shift, mirrored): logits} over the validation images, and the member's views/s."""
    plain = det.policy.with_views()
    out, seconds = {}, 0.0
    for shift in SHIFTS:
        pixels = val.pixels if shift == (0, 0) else shift_views(val.pixels, *shift)
        for mirrored in (False, True):
            view = np.ascontiguousarray(pixels[:, :, ::-1]) if mirrored else pixels
            t = time.perf_counter()
            out[shift, mirrored] = predict_logits(det.model, plain, view)
            seconds += time.perf_counter() - t
    return out, len(out) * len(val.labels) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="*", help="member bundles (names or paths), two or more")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--from-json", action="store_true", help="rewrite the docs from the stored result, measuring nothing")
    args = ap.parse_args()
    if args.from_json:
        stored = load_json(STORE, "ensemble_sweep")
        if stored is None:
            raise SystemExit(f"ensemble_sweep: no {STORE / 'ensemble_sweep.json'} yet; run the sweep first")
        return write_docs(stored)
    if len(args.bundles) < 2:
        raise SystemExit("ensemble_sweep: give two or more bundles")

    dets = [realjudge.load(b, device="cpu", precision="float32") for b in args.bundles]
    configs = [TrainConfig.from_json(d.info.meta["training_config"]) for d in dets]
    for d, c in zip(dets[1:], configs[1:]):
        if not d.policy.same_input(dets[0].policy) or c.val_fraction != configs[0].val_fraction:
            raise SystemExit(f"ensemble_sweep: {d.info.path} does not share the first member's input or split")
    t0 = time.time()
    val = load_split(configs[0], dets[0].policy, progress=False).val
    scored = [score_member(d, val) for d in dets]

    rows = []
    for k in range(1, len(dets) + 1):
        for subset in itertools.combinations(range(len(dets)), k):
            for view_name, (shifts, mirror) in VIEWS.items():
                keys = [(s, m) for s in shifts for m in ((False, True) if mirror else (False,))]
                logits = np.mean([scored[i][0][key] for i in subset for key in keys], 0)
                _, m = calibrated_metrics(logits, val.labels)
                seconds_per_image = sum(len(keys) / scored[i][1] for i in subset)
                rows.append({"members": [args.bundles[i] for i in subset], "views": view_name, "n_views": len(keys),
                             "errors": int(round((1 - m["accuracy"]) * len(val.labels))), "accuracy": m["accuracy"],
                             "roc_auc": m["roc_auc"], "model_img_s": 1 / seconds_per_image})
    result = {"bundles": args.bundles, "n_val": len(val.labels),
              "member_views_per_s": {b: s[1] for b, s in zip(args.bundles, scored)}, "rows": rows,
              "seconds": time.time() - t0}
    print(json.dumps(result, indent=2))
    if args.no_docs:
        return
    save_json(STORE, "ensemble_sweep", result)
    write_docs(result)


def write_docs(result: dict) -> None:
    table = "\n".join(f"| {' + '.join(f'`{m}`' for m in r['members'])} | {r['views']} | {r['errors']} | "
                      f"{100 * r['accuracy']:.2f}% | {r['roc_auc']:.5f} | {r['model_img_s']:,.0f} |" for r in result["rows"])
    members = "\n".join(f"- `{b}`: {v:,.0f} views/s" for b, v in result["member_views_per_s"].items())
    body = f"""## Ensemble members and views, chosen on validation (`ensemble-sweep`)

Command: `python benchmarks/ensemble_sweep.py {' '.join(result['bundles'])}` ({result['n_val']} validation images of
the members' shared split; every combination recalibrated on it as training does). The model step ran in
float32 through the training engine (batches of 512 images); the img/s column is estimated from each
member's views/s measured there. It is not `detect`'s speed and does not rank it either: in float32
passes of 512 the ResNet is several times slower than in `detect`'s bfloat16 passes of 64 views
(`cpu-pass-size`); `cifake-speed` measures `detect` itself.

{members}

| members | test-time views | errors | accuracy | ROC-AUC | model step, img/s (float32, estimate) |
| --- | --- | --- | --- | --- | --- |
{table}

Every choice was made on this split, so the best rows are optimistic estimates.
"""
    write_section("RESULTS.md", "ensemble-sweep", body)
    write_section("CIFAKE.md", "ensemble-sweep", body)


if __name__ == "__main__":
    main()
