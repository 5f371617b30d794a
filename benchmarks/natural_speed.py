"""Time the shipped `natural` detector on 1024-px images from disk, against the same two floors as
`detect_speed.py` (decoding + input policy alone; the model alone on the decoded views), and at
several crop counts (accuracy against crop count: `benchmarks/natural_report.py`, docs/NTF.md).

    python benchmarks/natural_speed.py [--n 80] [--repeats 2]

Images: every image of `natural-extra.zip` whose sides are both at least 1024 px (camera and phone
photographs and 1024-px generators), centre-cropped to 1024 x 1024 (no resampling) and written as
JPEG quality 90, the size and format of a typical upload; the first n in a fixed order.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from PIL import Image

import realjudge
from realjudge.data.decode import decode_bytes
from realjudge.data.inputs import expand_inputs
from realjudge.data.layouts import open_source
from realjudge.data.samples import iter_sample_bytes

from _common import SHARED_DATA, measure, write_section

DATA = SHARED_DATA / "natural-extra.zip"
SIDE = 1024
CROP_COUNTS = (4, 9, 16, 25, 64)


def extract(n: int, out: Path) -> int:
    samples = sorted(open_source(str(DATA)), key=lambda s: s.locator)
    samples = [s for s in samples if min(int(s.meta.get("width", 0) or 0), int(s.meta.get("height", 0) or 0)) >= SIDE]
    written = 0
    for s, blob in iter_sample_bytes(samples):
        if written == n or not isinstance(blob, bytes):
            continue
        px = decode_bytes(blob, s.locator).pixels
        h, w = px.shape[:2]
        if min(h, w) < SIDE:
            continue
        y, x = (h - SIDE) // 2, (w - SIDE) // 2
        buf = io.BytesIO()
        Image.fromarray(px[y:y + SIDE, x:x + SIDE]).save(buf, "JPEG", quality=90)
        (out / f"{written:04d}.jpg").write_bytes(buf.getvalue())
        written += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()

    import torch

    det = realjudge.load("natural", device="cpu")
    shipped = det.policy.crops
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = extract(args.n, root)
        samples, _ = expand_inputs([str(root)])
        rows = {}
        for crops in sorted(set(CROP_COUNTS) | {shipped}):
            det.policy = replace(det.policy, crops=crops)
            rows[crops] = measure(det, samples, args.workers, args.repeats)
        det.policy = replace(det.policy, crops=shipped)
    result = {"n": n, "side": SIDE, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "shipped_crops": shipped, "rows": {str(k): v for k, v in rows.items()}}
    print(json.dumps(result, indent=2))
    if args.no_docs:
        return
    s = rows[shipped]
    ms = 1000 / s["detect_ips"]
    table = "\n".join(f"| {k}{' (shipped)' if k == shipped else ''} | {r['decode_floor_ips']:.1f} | {r['model_floor_ips']:.1f} | "
                      f"{r['detect_ips']:.1f} | {1000 / r['detect_ips']:.0f} | {r['ratio_to_slower_floor']:.2f}x | {r['bound_by']} |"
                      for k, r in rows.items())
    body = f"""## `detect` speed of the shipped `natural` detector

Command: `python benchmarks/natural_speed.py` ({n} images of 1024 x 1024 px, JPEG q90, from disk: centre crops of
the `natural-extra.zip` images that are at least that large; {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch
threads; start-up excluded; best of {args.repeats}). Floors as in the CIFAKE table above: decoding and the input
policy alone, and the model alone on the decoded views. One network scores every crop of {det.policy.size} px.

| crops per image | decode floor (img/s) | model floor (img/s) | detect (img/s) | ms per image | detect / slower floor | bound by |
| --- | --- | --- | --- | --- | --- | --- |
{table}

Target: at most 100 ms per 1024-px image end to end with the shipped crop count: **{'met' if ms <= 100 else 'missed'}**
({ms:.0f} ms). Accuracy against crop count is in docs/NTF.md.
"""
    write_section("RESULTS.md", "natural-speed", body)


if __name__ == "__main__":
    main()
