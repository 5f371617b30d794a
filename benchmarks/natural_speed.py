"""Time the shipped `natural` detector on natural-resolution images from disk, against the same two
floors as `detect_speed.py` (decoding + input policy alone; the model alone on decoded views), and
the cost of each of its two networks alone.

    python benchmarks/natural_speed.py [--n 200] [--repeats 2]

Images: the first n of `natural-train.zip` in a fixed order (reals and fakes as they are, no
re-encoding), written to a temporary folder so that `detect` reads them from disk.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402
from detect_speed import measure  # noqa: E402

import realjudge  # noqa: E402
from realjudge.io.sources import expand_inputs, iter_sample_bytes, open_source  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared/data/natural-train.zip"


def extract(n: int, out: Path) -> None:
    samples = sorted(open_source(str(DATA)), key=lambda s: s.locator)
    picked = [samples[i] for i in np.random.default_rng(0).choice(len(samples), min(n, len(samples)), replace=False)]
    for i, (s, blob) in enumerate(iter_sample_bytes(picked)):
        if isinstance(blob, bytes):
            (out / f"{i:05d}{Path(s.locator.split('::')[-1]).suffix}").write_bytes(blob)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    import torch

    from realjudge.bundle import BundleInfo

    det = realjudge.load("natural", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        extract(args.n, root)
        samples, _ = expand_inputs([str(root)])
        from PIL import Image

        pixels = sorted(np.prod(Image.open(s.locator).size) for s in samples)
        median_mp = pixels[len(pixels) // 2] / 1e6
        rows = {"natural (both networks)": measure(det, samples, args.workers, args.repeats)}
        if det.info.arch == "ensemble":
            for member, spec in zip(det.model.members, det.info.arch_kwargs["members"]):
                info = BundleInfo(spec["arch"], spec["arch"], spec.get("arch_kwargs", {}), det.policy, det.calibration)
                rows[f"{spec['arch']} network alone"] = measure(realjudge.Detector(member, info), samples, args.workers,
                                                               args.repeats)
    result = {"n": len(samples), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "views_per_image": det.policy.crops, "rows": rows}
    print(json.dumps(result, indent=2))
    if args.no_docs:
        return
    alone = {k: r for k, r in rows.items() if k.endswith("alone")}
    heavier = f" The heavier network: {min(alone, key=lambda k: alone[k]['model_floor_ips']).replace(' network alone', '')}." if alone else ""
    table = "\n".join(f"| {k} | {r['decode_floor_ips']:.1f} | {r['model_floor_ips']:.1f} | {r['detect_ips']:.1f} | "
                      f"{1000 / r['detect_ips']:.0f} | {r['ratio_to_slower_floor']:.2f}x | {r['bound_by']} |" for k, r in rows.items())
    body = f"""## `detect` speed of the shipped `natural` detector

Command: `python benchmarks/natural_speed.py` ({len(samples)} images of `natural-train.zip` from disk, median
{median_mp:.2f} megapixels; {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads; up to {det.policy.crops}
crops of {det.policy.size} px per image, start-up excluded). Floors as in the CIFAKE table above.

| pipeline | decode floor (img/s) | model floor (img/s) | detect (img/s) | ms per image | detect / slower floor | bound by |
| --- | --- | --- | --- | --- | --- | --- |
{table}

The pair runs both networks on every crop.{heavier} A ratio below 1x means `detect` kept pace with the
model alone within this machine's run-to-run noise (best of {args.repeats}).
"""
    write_section("RESULTS.md", "natural-speed", body)


if __name__ == "__main__":
    main()
