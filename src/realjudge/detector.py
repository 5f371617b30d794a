"""Detector: one trained bundle, loaded once, scoring anything `decode` reads.

Scoring goes through realjudge.pipeline (decode -> route -> views -> model -> calibrate -> record);
the Detector holds the model step (`logits`), the bundle's policy and its calibration.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import numpy as np

from .bundle import BundleInfo, load_bundle, shipped_names
from .calibrate import check_threshold
from .data.decode import DEFAULT_MAX_PIXELS
from .errors import UsageError
from .records import RECORD_FIELDS, Record  # noqa: F401  (RECORD_FIELDS: the CLI's columns)
from .router import NATURAL_MODEL, SMALL_MODEL, Router


class Detector:
    """A loaded bundle. `predict` takes a path, bytes, a PIL image, an array, or a list of them."""

    def __init__(self, model, info: BundleInfo, device: str = "cpu", threshold: float | None = None):
        self.model = model
        self.info = info
        self.device = device
        self.policy = info.policy
        self.calibration = info.calibration
        self.threshold = self.calibration.threshold if threshold is None else check_threshold(threshold)

    def with_threshold(self, threshold: float) -> "Detector":
        """The same model and calibration, deciding at another threshold."""
        return Detector(self.model, self.info, self.device, threshold)

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, arch={self.info.arch!r}, threshold={self.threshold:.4f})"

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """N x S x S x 3 uint8 views -> N raw logits (the model step of realjudge.pipeline)."""
        import torch

        if len(batch) == 0:
            return np.zeros(0, np.float32)
        with torch.inference_mode():
            return self.model(self.policy.model_input(batch, self.device)).float().cpu().numpy()

    def predict(self, inputs: Any, names: list[str] | None = None, threshold: float | None = None,
                batch_size: int = 256, verdict: str = "pixels", provenance: bool = True) -> Record | list[Record]:
        """Score one input (returns a Record) or a list (returns a list of Records, in order).

        `verdict="combined"` lets strong provenance override the pixel verdict (the record says so);
        `provenance=False` skips reading it."""
        return Router.single(self).predict(inputs, names, threshold, batch_size, verdict, provenance)

    def predict_iter(self, items: Iterable[tuple[Any, str]], threshold: float | None = None, batch_size: int = 256,
                     workers: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS, verdict: str = "pixels",
                     provenance: bool = True) -> Iterator[Record]:
        """Stream records for (input, name) pairs, in order; `workers` decoding processes."""
        return Router.single(self).predict_iter(items, threshold, batch_size, workers, max_pixels, verdict, provenance)

    def explain(self, image: Any, method: str = "gradcam", target: str = "verdict", name: str | None = None):
        """Where the evidence lies: an Explanation with `.heatmap`, `.overlay`, `.record` (see realjudge.explain)."""
        return Router.single(self).explain(image, method=method, target=target, name=name)


AUTO_NAMES = (None, "", "auto")


def load(name_or_path: str | None = None, device: str = "auto", threshold: float | None = None):
    """Load a shipped detector by name, or a bundle folder / zip by path.

    With no name (or "auto") it returns the router over the shipped detectors, which picks one by
    image size like `realjudge detect`: both sides at most 64 px -> `cifake`, larger -> `natural`.
    The router has the same `predict`, `predict_iter` and `explain` as a Detector."""
    from .runtime import resolve_device

    if name_or_path in AUTO_NAMES:
        return load_for_inputs(None, device, threshold)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise UsageError(f"model must be a shipped detector name, a bundle path or 'auto', got {name_or_path!r}")
    name_or_path = str(name_or_path)

    dev = resolve_device(device)
    model, info = load_bundle(name_or_path, str(dev))
    import torch

    model = model.to(memory_format=torch.channels_last)
    return Detector(model, info, str(dev), threshold)


def load_for_inputs(model: str | None, device: str = "auto", threshold: float | None = None,
                    provenance: bool = True):
    """A router (`realjudge.router`) over one named model, or over the shipped small and natural detectors (no model, or "auto")."""
    if model and model != "auto":
        return Router.single(load(model, device, threshold), provenance)
    shipped = shipped_names()
    if SMALL_MODEL not in shipped:
        raise UsageError("no shipped detector is installed; pass --model PATH to a bundle")
    dets = {SMALL_MODEL: load(SMALL_MODEL, device, threshold)}
    if NATURAL_MODEL in shipped:
        dets[NATURAL_MODEL] = load(NATURAL_MODEL, device, threshold)
    return Router(dets, SMALL_MODEL, NATURAL_MODEL if NATURAL_MODEL in dets else SMALL_MODEL, provenance)
