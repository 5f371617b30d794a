"""What one scored input becomes: a Record (the fields every entry point returns), and the Prepared
views it is scored from. A leaf module: the pipeline, the detectors and the service build on it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

RECORD_FIELDS = ("path", "p_fake", "verdict", "threshold", "model", "error", "warnings", "provenance_verdict", "provenance",
                 "verdict_source", "pixel_verdict")


@dataclass
class Record:
    """One scored image. `error` is set (and `p_fake`, `model`, `threshold` None) when the file could not be
    scored; `warnings` says when the verdict deserves less trust (a photograph resized for a 32x32 model)."""

    path: str
    p_fake: float | None = None
    verdict: str | None = None
    threshold: float | None = None
    model: str | None = None
    error: str | None = None
    logit: float | None = None
    preprocess: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    # What the file says about its origin (realjudge.provenance), beside the pixel score, never in it.
    # None: not read (--no-provenance, or an input given as pixels rather than a file).
    provenance: list[dict[str, Any]] | None = None
    provenance_verdict: str | None = None
    # "provenance" only under the explicit combined verdict, when the evidence overrode the pixels;
    # `pixel_verdict` then keeps what the detector said.
    verdict_source: str = "pixels"
    pixel_verdict: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Prepared:
    """One input on its way to the model (realjudge.pipeline): the views its size-picked model scores."""

    name: str
    views: np.ndarray | None  # V x S x S x 3 uint8
    note: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    provenance: list[dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)
    model: str | None = None  # the detector the size rule picked; None when the input could not be decoded
    pixels: np.ndarray | None = None  # the decoded image, kept only for an explanation drawn on it
    timings: dict[str, float] = field(default_factory=dict)
