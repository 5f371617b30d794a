"""Detector: one trained bundle, loaded once, scoring anything `decode` reads.

Data flows one way: decode -> preprocess (the bundle's policy) -> model -> calibrate -> record.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .bundle import BundleInfo, load_bundle
from .errors import UsageError
from .io.decode import DEFAULT_MAX_PIXELS
from .provenance import verdict as provenance_verdict

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

        det = self if threshold is None else Detector(self.model, self.info, self.device, threshold)
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
        from .router import load_for_inputs

        return load_for_inputs(None, device, threshold)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise UsageError(f"model must be a shipped detector name, a bundle path or 'auto', got {name_or_path!r}")
    name_or_path = str(name_or_path)

    dev = resolve_device(device)
    model, info = load_bundle(name_or_path, str(dev))
    import torch

    model = model.to(memory_format=torch.channels_last)
    return Detector(model, info, str(dev), threshold)
