"""How many views one CPU forward pass should take: the torch model step's views/s against the pass size.

`Detector.logits` splits a batch into passes of at most `realjudge.detector.CPU_PASS_PIXELS` input
pixels on the CPU (the whole batch on a GPU). This script measures every shipped detector's model
step, at its bundle's precision, on 4,096 views of its own input size (fewer for large views) in
batches of 256, as `detect` sends them, for passes of 8 to 256 views, in one run on one machine, and
marks the pass size that rule gives. The views are random pixels: the step's cost does not depend on
what the pixels show.

    python benchmarks/cpu_pass_size.py [--repeats 5] [--no-docs]

Writes the `cpu-pass-size` section of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from _common import best_of, write_section

PASSES = (8, 16, 32, 64, 128, 256)
BATCH = 256
PIXELS = 4096 * 32 * 32  # the views of one measurement: 4,096 of 32 px, 1,024 of 64 px


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="best of this many timings of each pass size, taking turns")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    import torch

    import realjudge
    from realjudge import detector as detector_module
    from realjudge.bundle import shipped_names

    rule = detector_module.CPU_PASS_PIXELS
    rows = []
    for name in shipped_names():
        det = realjudge.load(name, device="cpu")
        size = det.policy.size
        n_views = max(BATCH, PIXELS // (size * size))
        views = np.random.default_rng(0).integers(0, 256, (n_views, size, size, 3), dtype=np.uint8)
        batches = [views[i:i + BATCH] for i in range(0, n_views, BATCH)]
        det.logits(views[:8])  # warm-up: folds batch norm
        chosen = max(1, rule // (size * size))
        best = dict.fromkeys(PASSES, float("inf"))
        try:  # the sizes take turns, so that a slow spell of a shared machine does not fall on one of them
            for _ in range(args.repeats):
                for n in PASSES:
                    detector_module.CPU_PASS_PIXELS = n * size * size
                    det.logits(batches[0])
                    best[n] = min(best[n], best_of(1, lambda: [det.logits(b) for b in batches]))
        finally:
            detector_module.CPU_PASS_PIXELS = rule
        speeds = {n: n_views / t for n, t in best.items()}
        rows.append({"name": name, "size": size, "precision": det.precision, "chosen": chosen, "speeds": speeds})
        print(name, size, det.precision, {n: round(v) for n, v in speeds.items()}, "rule:", chosen, flush=True)

    header = "| detector | view size | precision | " + " | ".join(f"{n} views" for n in PASSES) + " | rule's pass | rule / whole batch |"
    lines = [header, "| --- " * (len(PASSES) + 5) + "|"]
    for r in rows:
        cells = [f"**{r['speeds'][n]:,.0f}**" if n == r["chosen"] else f"{r['speeds'][n]:,.0f}" for n in PASSES]
        at_rule = r["speeds"].get(r["chosen"])
        ratio = f"{at_rule / r['speeds'][BATCH]:.2f}x" if at_rule else "-"
        lines.append(f"| `{r['name']}` | {r['size']} px | {r['precision']} | " + " | ".join(cells)
                     + f" | {r['chosen']} | {ratio} |")
    body = f"""## The CPU forward pass's size (`cpu-pass-size`)

Command: `python benchmarks/cpu_pass_size.py` ({os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads,
torch {torch.__version__}; best of {args.repeats}, the pass sizes taking turns). Views/s of each shipped detector's model step
(`Detector.logits`, at its bundle's precision) on {PIXELS:,} pixels of views of its input size, in
batches of {BATCH} views, each split into passes of the given number of views. In bold: the pass that `realjudge.detector.CPU_PASS_PIXELS`
({rule:,} input pixels a pass) gives, which `detect`, `serve` and the Python API use on the CPU.

{chr(10).join(lines)}

A pass whose activations outgrow the CPU's caches runs slower per view, so one batch of 256 views
is scored faster as several small passes; a GPU takes the whole batch in one."""
    if not args.no_docs:
        print(write_section("RESULTS.md", "cpu-pass-size", body))


if __name__ == "__main__":
    main()
