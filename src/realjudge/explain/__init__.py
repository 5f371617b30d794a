"""Explanations: where in the image a detector found its evidence.

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

from .gradcam import METHODS, class_maps
from .overlay import OverlayWriter, enlarge, render_overlay

TARGETS = ("verdict", "fake", "real")


@dataclass
class Explanation:
    heatmap: np.ndarray  # S x S float32 in [0, 1]
    overlay: Image.Image  # RGB, short side >= 256
    method: str
    record: Any  # realjudge.Record
    target: str  # "fake" or "real": the class whose evidence the map shows
    view: np.ndarray  # the S x S x 3 uint8 model input that was explained
    notes: list[str] = field(default_factory=list)

    def overlay_png(self) -> bytes:
        buf = io.BytesIO()
        self.overlay.save(buf, "PNG")
        return buf.getvalue()

    def panel(self) -> Image.Image:
        """The enlarged input and its overlay side by side."""
        left = enlarge(self.view, min(self.overlay.size))
        out = Image.new("RGB", (left.width + self.overlay.width, max(left.height, self.overlay.height)), "white")
        out.paste(left, (0, 0))
        out.paste(self.overlay, (left.width, 0))
        return out


def explain(detector, image: Any, method: str = "gradcam", target: str = "verdict", name: str | None = None) -> Explanation:
    """Explain one image (anything `decode` reads) with `detector` (a realjudge.Detector)."""
    from ..errors import UsageError
    from ..io.decode import decode

    if target not in TARGETS:
        raise UsageError(f"unknown explanation target {target!r}; known: {', '.join(TARGETS)}")
    if method not in METHODS:
        raise UsageError(f"unknown explanation method {method!r}; known: {', '.join(METHODS)}")
    decoded = decode(image, name)
    label = name or decoded.name
    record = detector.predict([decoded.pixels], names=[label])[0]
    record.facts = decoded.facts
    views, note = detector.policy.views(decoded.pixels)
    notes = [] if note == "none" else [note]
    if len(views) > 1:
        # Crop policies score several patches; the map is drawn on the first (the centre crop).
        notes.append(f"explained the first of {len(views)} views (centre crop)")
    view = np.array(views[0], np.uint8)  # a writable copy: torch warns on read-only arrays
    side = target
    if target == "verdict":
        side = "fake" if record.p_fake is not None and record.p_fake >= detector.threshold else "real"
    x = detector.policy.model_input(view[None], detector.device)
    heat = class_maps(detector.model, x, [1.0 if side == "fake" else -1.0], method)[0]
    return Explanation(heat, render_overlay(view, heat), method, record, side, view, notes)


__all__ = ["Explanation", "OverlayWriter", "explain", "METHODS", "TARGETS"]
