"""An explanation of one image: where in it a detector found its evidence.

    from realjudge.explain import explain
    exp = explain(detector, "photo.jpg", method="gradcam")
    exp.heatmap        # float32 H x W in [0, 1], at the model's input resolution
    exp.overlay        # PIL RGB image, short side >= 256 px
    exp.overlay_png()  # PNG bytes
    exp.record         # the Record (p_fake, verdict...) of that image

By default the map explains the detector's own decision: evidence for "fake" when p_fake reaches
the threshold, evidence for "real" otherwise (`target="fake"` or `"real"` forces one side).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import UsageError
from .gradcam import METHODS, class_maps
from .overlay import render_overlay

TARGETS = ("verdict", "fake", "real")


@dataclass
class Explanation:
    heatmap: np.ndarray  # S x S float32 in [0, 1]
    overlay: Image.Image  # RGB, short side >= 256
    method: str
    record: Any  # realjudge.Record
    target: str  # "fake" or "real": the class whose evidence the map shows
    view: np.ndarray  # the uint8 image the map lies on: the model input, or the whole (padded) frame
    notes: list[str] = field(default_factory=list)
    crops: list[dict] = field(default_factory=list)  # crop policies: {"x", "y", "size", "p_fake"} per crop
    coverage: float = 1.0  # share of the image's pixels that some scored crop covers

    def overlay_png(self) -> bytes:
        buf = io.BytesIO()
        self.overlay.save(buf, "PNG")
        return buf.getvalue()


def explain(detector, image: Any, method: str = "gradcam", target: str = "verdict", name: str | None = None) -> Explanation:
    """Explain one image (anything `decode` reads) with `detector` (a Detector, or a Router that picks by size)."""
    return detector.explain(image, method=method, target=target, name=name)


def explain_prepared(detector, prepared, record, method: str = "gradcam", target: str = "verdict") -> Explanation:
    """The explanation of an image already decoded and scored by realjudge.pipeline (`prepared.pixels`
    and its `record`), by the detector that scored it: nothing is decoded or scored twice."""
    if target not in TARGETS:
        raise UsageError(f"unknown explanation target {target!r}; known: {', '.join(TARGETS)}")
    if method not in METHODS:
        raise UsageError(f"unknown explanation method {method!r}; known: {', '.join(METHODS)}")
    pixels = prepared.pixels
    side = target
    if target == "verdict":
        side = "fake" if record.p_fake is not None and record.p_fake >= record.threshold else "real"
    sign = 1.0 if side == "fake" else -1.0
    policy = detector.policy
    if policy.kind == "crop":
        return _explain_crops(detector, pixels, record, method, side, sign)
    views, note = policy.views(pixels)
    notes = [] if note == "none" else [note]
    h, w = pixels.shape[:2]
    what = f"whole image ({w}x{h})" + (f", resized to {policy.size}x{policy.size}" if (h, w) != (policy.size,) * 2 else "")
    if len(views) > 1:
        # The score averages shifted / mirrored copies; the map is drawn on the untouched view.
        notes.append(f"explained the untouched view of the {what}; the score averages {len(views)} shifted/mirrored views")
    view = np.array(views[0], np.uint8)  # a writable copy: torch warns on read-only arrays
    x = policy.model_input(view[None], detector.device)
    heat = class_maps(detector.model, x, [sign], method)[0]
    caption = f"{method}, evidence for {side}: {what}"
    return Explanation(heat, render_overlay(view, heat, caption=caption), method, record, side, view, notes)


def _explain_crops(detector, pixels: np.ndarray, record, method: str, side: str, sign: float) -> Explanation:
    policy = detector.policy
    h0, w0 = pixels.shape[:2]
    base, note = policy._views(pixels)  # the crops themselves, before test-time copies
    s = policy.size
    frame, _ = policy.frame(pixels)
    h, w = frame.shape[:2]
    positions = policy.positions(frame)
    batch = np.stack([np.array(v, np.uint8) for v in base])
    x = policy.model_input(batch, detector.device)
    maps = class_maps(detector.model, x, [sign] * len(batch), method)
    crop_p = detector.calibration.probability(detector.logits(batch))
    weight = crop_p if side == "fake" else 1.0 - crop_p
    acc = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for (y, x0), m, wt in zip(positions, maps, weight):
        acc[y:y + s, x0:x0 + s] += wt * m
        count[y:y + s, x0:x0 + s] += 1
    covered = count > 0
    heat = np.where(covered, acc / np.maximum(count, 1), 0.0).astype(np.float32)
    coverage = float(covered.mean())
    crops = [{"x": int(x0), "y": int(y), "size": s, "p_fake": float(p)} for (y, x0), p in zip(positions, crop_p)]
    what = (f"{len(crops)} crops of {s} px covering {100 * coverage:.0f}% of the {w0}x{h0} image"
            + ("" if coverage >= 0.999 else "; grey: not examined"))
    notes = [note, f"explained every scored crop: {what}; each crop's map weighted by its own p_{side}"]
    overlay = render_overlay(frame, heat, mask=covered, boxes=[(c["x"], c["y"], s) for c in crops],
                             caption=f"{method}, evidence for {side}: {what}")
    return Explanation(heat, overlay, method, record, side, frame, notes, crops, coverage)


def describe_explained(exp) -> str:
    """One line: which part of the image the map explains."""
    if exp.crops:
        return (f"{len(exp.crops)} crops of {exp.crops[0]['size']} px covering {100 * exp.coverage:.0f}% of the image, "
                "stitched on the full frame")
    return "the whole image" + (f" ({exp.record.preprocess})" if exp.record.preprocess not in (None, "none") else "")
