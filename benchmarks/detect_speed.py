"""Time `detect` on 20,000 CIFAKE images from disk against two floors measured in the same run.

- decode floor: reading + decoding + the bundle's input policy alone, in the same worker processes;
- model floor: the model's forward pass alone on already-decoded tensors;
- detect: the whole pipeline (`Router.predict_samples` with its automatic choice of decoding
  processes, what `realjudge detect` runs), start-up excluded.
Target: detect within 1.25x of the slower floor. Also: peak memory, the CLI's wall time with
start-up, and the paper's small CNN through the same pipeline.

    python benchmarks/detect_speed.py [--n 20000] [--model cifake] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

import realjudge
from realjudge.data.inputs import expand_inputs

from _common import SHARED_DATA, measure, write_section

DATA = SHARED_DATA / "cifake-train.tar.gz"


def extract(n: int, out: Path) -> None:
    """n/2 REAL and n/2 FAKE files, in archive order, written as they are (no re-encoding)."""
    want = {"REAL": n // 2, "FAKE": n - n // 2}
    with tarfile.open(DATA, "r:gz") as tf:
        for m in tf:
            cls = m.name.split("/")[-2] if m.isfile() else None
            if cls in want and want[cls] > 0:
                want[cls] -= 1
                dest = out / cls / Path(m.name).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tf.extractfile(m).read())
            if not any(want.values()):
                break


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--model", default="cifake")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cifake20k"
        extract(args.n, root)
        samples, _ = expand_inputs([str(root)])
        assert len(samples) == args.n, len(samples)

        det = realjudge.load(args.model, device="cpu")
        shipped = measure(det, samples, args.workers, args.repeats)

        # The paper's small CNN in the same pipeline (random weights: speed only), one view per image as in
        # the paper: the shipped detector's test-time views are part of what its accuracy costs.
        from realjudge.bundle import BundleInfo
        from realjudge.models import create_model

        import torch

        cnn = create_model("cifake-cnn").eval().to(memory_format=torch.channels_last)
        info = BundleInfo("paper-cnn", "cifake-cnn", {}, det.policy.with_views(), det.calibration)
        paper = measure(realjudge.Detector(cnn, info), samples, args.workers, args.repeats)

        t = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "realjudge", "detect", str(root), "--model", args.model,
                              "--format", "jsonl", "--no-progress"], capture_output=True, text=True)
        cli_seconds = time.perf_counter() - t
        assert cli.returncode == 0, cli.stderr
        assert len(cli.stdout.splitlines()) == args.n

    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    params = sum(p.numel() for p in det.model.parameters())
    result = {"n": args.n, "workers": args.workers, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "shipped": shipped, "paper_cnn": paper, "cli_wall_seconds_with_startup": cli_seconds,
              "peak_rss_mb_main": peak_self, "peak_rss_mb_largest_child": peak_children, "shipped_params": params,
              "paper_cnn_params": sum(p.numel() for p in cnn.parameters())}
    print(json.dumps(result, indent=2))
    if args.no_docs:
        return
    s, p = shipped, paper
    n_views = len(det.policy.test_time_views(np.zeros((1, det.policy.size, det.policy.size, 3), np.uint8)))
    verdict = "met" if s["ratio_to_slower_floor"] <= 1.25 else "missed"
    if s["bound_by"] == "model" and s["ratio_to_slower_floor"] <= 1.25:
        reading = (f"The shipped model is the slow stage ({n_views} view(s) per image), so `detect` decodes inline "
                   "and stays close to the model floor.")
    else:
        reading = ("Both floors are far above `detect`: what bounds it is the per-image work in the main process "
                   "that neither floor holds (decoding and the model in turn rather than overlapped, batching, "
                   "calibration and the record).")
    body = f"""## `detect` speed on {args.n:,} CIFAKE images from disk

Command: `python benchmarks/detect_speed.py` ({os.cpu_count()} CPU cores, {args.workers} decoding processes for the decode floor,
{torch.get_num_threads()} torch threads, batch 256, best of {args.repeats}; start-up excluded except in the last row).

| pipeline | decode floor (img/s) | model floor (img/s) | detect (img/s) | detect / slower floor | bound by |
| --- | --- | --- | --- | --- | --- |
| shipped `{det.name}` ({params:,} parameters) | {s['decode_floor_ips']:.0f} | {s['model_floor_ips']:.0f} | {s['detect_ips']:.0f} | {s['ratio_to_slower_floor']:.2f}x | {s['bound_by']} |
| paper's CNN ({result['paper_cnn_params']:,} parameters, one view per image) | {p['decode_floor_ips']:.0f} | {p['model_floor_ips']:.0f} | {p['detect_ips']:.0f} | {p['ratio_to_slower_floor']:.2f}x | {p['bound_by']} |

Target 1.25x of the slower floor: **{verdict}** for the shipped detector ({s['ratio_to_slower_floor']:.2f}x).
The floors each have the whole machine to themselves. `detect` scores its first batch in one process
and moves decoding to worker processes only when decoding costs more than a quarter of the model's
time: on {os.cpu_count()} cores, worker processes and the model's threads fight over the same cores, and
overlapping a cheap stage loses more than it gains. {reading}
The shipped network's accuracy costs {p['detect_ips'] / s['detect_ips']:.1f}x in throughput against the paper's CNN.

`realjudge detect DIR --format jsonl` over the same {args.n:,} files, start-up included:
{cli_seconds:.1f} s ({args.n / cli_seconds:.0f} img/s). Peak memory: {peak_self:.0f} MB in the main
process, {peak_children:.0f} MB in the largest child.
"""
    write_section("RESULTS.md", "detect-speed", body)


if __name__ == "__main__":
    main()
