"""What one scored input becomes: a Record (the fields every entry point returns), the Prepared
views it is scored from, and the `predict` surface a Detector and the Router share. A leaf module,
so that the detector and the router both build on it without importing each other."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import UsageError

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
    name: str
    views: np.ndarray | None  # V x S x S x 3 uint8
    note: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    provenance: list[dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)


def predict_inputs(predict_iter, inputs: Any, names: list[str] | None, **options):
    """The `predict` surface a Detector and the Router share: one input gives a Record, a list a list."""
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    labels = names or [_input_name(o, i) for i, o in enumerate(items)]
    if len(labels) != len(items):
        raise UsageError(f"names: {len(labels)} names for {len(items)} inputs")
    records = list(predict_iter(zip(items, labels), **options))
    return records[0] if single else records


def _input_name(obj: Any, i: int) -> str:
    if isinstance(obj, (str, os.PathLike)):
        return str(obj)
    if hasattr(obj, "locator"):
        return obj.locator
    return f"<input {i}>"
