"""`realjudge data synthesize`: for every real photograph, its reconstructions through several
autoencoders, and the photograph itself, prepared and encoded exactly alike.

Output folder: `real/<id>.<ext>`, `fake/<reconstructor>/<id>.<ext>` and `manifest.csv` (the
columns of the shared data's manifests plus `group`, `pair` and `preprocess`). Every row of a pair
has `group = sha256:<sha256 of the original photograph's bytes>`, so the validation and protocol
splits put the pair on the side of the original photograph (`data.samples.split_key`).

Preparation is a recorded choice, the same for both members: `crop` (a centre crop, no resampling)
and `max_side` (a downscale, Lanczos) are off unless asked; `encode` is `png` (lossless: the
pixels are kept as they are) or `jpeg:Q`.

`match_sharpness` (on by default): where a reconstruction is softer than its photograph, the pair
also gets a copy of the photograph low-passed (Gaussian) to the reconstruction's mean |Laplacian|,
labelled real, beside the untouched one. Small decoders lose some high-frequency energy; without
the matched copy a detector could separate the pairs by blur alone, the shortcut that calls every
soft or downscaled photograph fake. With it, blur is on both sides and only the decoder's trace
separates them.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..perturb import blur
from ..sharpness import mean_abs_laplacian

FIELDS = ["path", "label", "generator", "source", "width", "height", "format", "bytes", "sha256", "group", "pair",
          "preprocess"]


def parse_encode(spec: str) -> tuple[str, int | None]:
    kind, _, q = spec.partition(":")
    if kind == "png" and not q:
        return "png", None
    if kind == "jpeg" and q.isdigit() and 1 <= int(q) <= 100:
        return "jpeg", int(q)
    raise UsageError(f"--encode must be png or jpeg:QUALITY (1-100), got {spec!r}")


def prepare(pixels: np.ndarray, crop: int | None, max_side: int | None) -> tuple[np.ndarray, list[str]]:
    notes = []
    h, w = pixels.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
        notes.append(f"downscaled {w}x{h}->{size[0]}x{size[1]} (lanczos)")
        h, w = pixels.shape[:2]
    if crop and (h > crop or w > crop):
        ch, cw = min(h, crop), min(w, crop)
        y, x = (h - ch) // 2, (w - cw) // 2
        pixels = pixels[y:y + ch, x:x + cw]
        notes.append(f"centre crop {w}x{h}->{cw}x{ch}")
    return np.ascontiguousarray(pixels), notes


def match_blur(real: np.ndarray, target: float, iters: int = 14) -> tuple[np.ndarray, float] | None:
    """The photograph Gaussian-blurred until its mean |Laplacian| is `target` (bisection on sigma in
    (0, 8]); None when it is already no sharper than that."""
    if mean_abs_laplacian(real) <= target:
        return None
    lo, hi = 0.0, 8.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        if mean_abs_laplacian(blur(real, mid)) > target:
            lo = mid
        else:
            hi = mid
    return blur(real, hi), hi


def encode(pixels: np.ndarray, kind: str, quality: int | None) -> bytes:
    buf = io.BytesIO()
    if kind == "png":
        Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    else:
        Image.fromarray(pixels).save(buf, "JPEG", quality=quality, subsampling="4:2:0")
    return buf.getvalue()


def synthesize(samples, out_dir: str | Path, recons: list, per_real: int | None = None, crop: int | None = None,
               max_side: int | None = None, encode_spec: str = "png", match_sharpness: bool = True, log=None) -> dict:
    """Write the pairs; returns counts. `per_real` reconstructors per photograph (rotating through
    `recons`, so each is used about equally; None: all of them). Unreadable files are skipped and named."""
    from .fit import load_real_images

    kind, quality = parse_encode(encode_spec)
    if per_real is not None and not 1 <= per_real <= len(recons):
        raise UsageError(f"--per-real must be 1..{len(recons)} (the number of reconstructors), got {per_real}")
    k = len(recons) if per_real is None else per_real
    out = Path(out_dir)
    ext = "png" if kind == "png" else "jpg"
    enc_note = "png (lossless)" if kind == "png" else f"jpeg q{quality}"
    rows, skipped, n_real = [], [], 0
    errors: list[str] = []
    seen: set[str] = set()
    for i, (s, pixels) in enumerate(load_real_images(samples, errors.append)):
        if s.id in seen:  # byte-identical photographs give one pair, not two that overwrite each other
            continue
        seen.add(s.id)
        prepared, notes = prepare(pixels, crop, max_side)
        pre = "; ".join(notes + [f"encoded {enc_note}"])
        h, w = prepared.shape[:2]
        pid = s.id[:20]
        group = f"sha256:{s.id}"
        members = [("real", None, prepared, pre, f"real/{pid}.{ext}")]
        try:
            for j in range(k):
                r = recons[(i + j) % len(recons)]
                fake = r(prepared)
                members.append(("fake", r.name, fake, pre, f"fake/{r.name}/{pid}.{ext}"))
                matched = match_blur(prepared, mean_abs_laplacian(fake)) if match_sharpness else None
                if matched is not None:
                    note = f"{pre}; gaussian blur sigma {matched[1]:.2f} (sharpness matched to {r.name})"
                    members.append(("real", None, matched[0], note, f"real/{pid}-{r.name}.{ext}"))
        except Exception as err:  # a reconstructor that fails on one image must not end the batch
            skipped.append(f"{s.locator}: reconstruction failed ({' '.join(str(err).split())[:160]})")
            continue
        for label, gen, px, pre, rel in members:
            blob = encode(px, kind, quality)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(blob)
            rows.append({"path": rel, "label": label, "generator": gen or s.generator or "real", "source": s.locator,
                         "width": w, "height": h, "format": "PNG" if kind == "png" else "JPEG", "bytes": len(blob),
                         "sha256": hashlib.sha256(blob).hexdigest(), "group": group, "pair": pid, "preprocess": pre})
        n_real += 1
        if log:
            log(f"{s.locator}: {k} reconstruction(s)")
    if not n_real:
        raise UsageError("no real photograph could be read from the inputs" + (f" ({errors[0]})" if errors else ""))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "manifest.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, FIELDS)
        wr.writeheader()
        wr.writerows(rows)
    n_fake = sum(r["label"] == "fake" for r in rows)
    return {"reals": n_real, "fakes": n_fake, "matched_reals": len(rows) - n_fake - n_real, "reconstructors": [r.name for r in recons],
            "skipped": skipped + errors, "out": str(out)}
