"""Detector: one trained bundle, loaded once, scoring anything `decode` reads.

Data flows one way: decode -> preprocess (the bundle's policy) -> model -> calibrate -> record.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import numpy as np

from .bundle import BundleInfo, load_bundle, shipped_names
from .errors import UsageError
from .io.decode import DEFAULT_MAX_PIXELS
from .provenance import verdict as provenance_verdict
from .records import RECORD_FIELDS, Prepared, Record, predict_inputs  # noqa: F401  (RECORD_FIELDS: the CLI's columns)

class Detector:
    """A loaded bundle. `predict` takes a path, bytes, a PIL image, an array, or a list of them."""

    def __init__(self, model, info: BundleInfo, device: str = "cpu", threshold: float | None = None):
        self.model = model
        self.info = info
        self.device = device
        self.policy = info.policy
        self.calibration = info.calibration
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise UsageError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = self.calibration.threshold if threshold is None else float(threshold)

    def with_threshold(self, threshold: float) -> "Detector":
        """The same model and calibration, deciding at another threshold."""
        return Detector(self.model, self.info, self.device, threshold)

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, arch={self.info.arch!r}, threshold={self.threshold:.4f})"

    # ------------------------------------------------------------------ scoring
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """N x S x S x 3 uint8 views -> N raw logits."""
        import torch

        if len(batch) == 0:
            return np.zeros(0, np.float32)
        with torch.inference_mode():
            return self.model(self.policy.model_input(batch, self.device)).float().cpu().numpy()

    def _records(self, prepared: list[Prepared], threshold: float) -> list[Record]:
        good = [p for p in prepared if p.error is None]
        if good:
            # One forward pass and one calibration call per batch; an image's score is the mean of its views' logits.
            starts = np.cumsum([0] + [len(p.views) for p in good[:-1]])
            per_view = self.logits(np.concatenate([p.views for p in good]))
            image_logits = np.add.reduceat(per_view, starts) / np.array([len(p.views) for p in good])
            probs = self.calibration.probability(image_logits)
        scored = iter(range(len(good)))
        out = []
        for p in prepared:
            if p.error is not None:
                # No model scored it: like the service, the record names no model and no threshold.
                out.append(Record(p.name, error=p.error, provenance=p.provenance,
                                  provenance_verdict=provenance_verdict(p.provenance), warnings=list(p.warnings)))
                continue
            i = next(scored)
            prob, logit = float(probs[i]), float(image_logits[i])
            out.append(Record(p.name, prob, self._verdict(prob, threshold), threshold, self.name, None, logit, p.note, p.facts,
                              p.provenance, provenance_verdict(p.provenance), warnings=list(p.warnings)))
        return out

    def _verdict(self, p: float, threshold: float) -> str:
        lo, hi = self.calibration.uncertain_band
        if threshold == self.calibration.threshold and lo < p < hi:
            return "uncertain"
        return "fake" if p >= threshold else "real"

    def predict(self, inputs: Any, names: list[str] | None = None, threshold: float | None = None,
                batch_size: int = 256, verdict: str = "pixels", provenance: bool = True) -> Record | list[Record]:
        """Score one input (returns a Record) or a list (returns a list of Records, in order).

        `verdict="combined"` lets strong provenance override the pixel verdict (the record says so);
        `provenance=False` skips reading it."""
        return predict_inputs(self.predict_iter, inputs, names, threshold=threshold, batch_size=batch_size,
                              verdict=verdict, provenance=provenance)

    def predict_iter(self, items: Iterable[tuple[Any, str]], threshold: float | None = None, batch_size: int = 256,
                     workers: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS, verdict: str = "pixels",
                     provenance: bool = True) -> Iterator[Record]:
        """Stream records for (input, name) pairs, in order; `workers` decoding processes."""
        from .router import Router

        det = self if threshold is None else self.with_threshold(threshold)
        router = Router({det.name: det}, det.name, det.name, provenance=provenance)
        yield from router.predict_items(items, batch_size, workers, max_pixels, verdict=verdict)

    def explain(self, image: Any, method: str = "gradcam", target: str = "verdict", name: str | None = None):
        """Where the evidence lies: an Explanation with `.heatmap`, `.overlay`, `.record` (see realjudge.explain)."""
        from .explain import explain

        return explain(self, image, method=method, target=target, name=name)


AUTO_NAMES = (None, "", "auto")


def load(name_or_path: str | None = None, device: str = "auto", threshold: float | None = None):
    """Load a shipped detector by name, or a bundle folder / zip by path.

    With no name (or "auto") it returns the router over the shipped detectors, which picks one by
    image size like `realjudge detect`: both sides at most 64 px -> `cifake`, larger -> `natural`.
    The router has the same `predict`, `predict_iter` and `explain` as a Detector."""
    from .train.engine import resolve_device

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
    from .router import NATURAL_MODEL, SMALL_MODEL, Router

    if model and model != "auto":
        det = load(model, device, threshold)
        return Router({det.name: det}, det.name, det.name, provenance)
    shipped = shipped_names()
    if SMALL_MODEL not in shipped:
        raise UsageError("no shipped detector is installed; pass --model PATH to a bundle")
    dets = {SMALL_MODEL: load(SMALL_MODEL, device, threshold)}
    if NATURAL_MODEL in shipped:
        dets[NATURAL_MODEL] = load(NATURAL_MODEL, device, threshold)
    return Router(dets, SMALL_MODEL, NATURAL_MODEL if NATURAL_MODEL in dets else SMALL_MODEL, provenance)
