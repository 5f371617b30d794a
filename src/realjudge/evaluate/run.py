"""Score a labelled data set with a detector (optionally perturbed) and compute its metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..detector import Detector
from ..errors import DecodeError, SourceError
from ..io.decode import decode_bytes
from ..io.sources import Sample, iter_sample_bytes, open_source, require_labels
from .metrics import binary_metrics, grouped_metrics
from .perturb import Perturbation


def load_labelled(paths: list[str], layout: str = "auto") -> list[Sample]:
    samples: list[Sample] = []
    for p in paths:
        samples += open_source(p, layout)
    require_labels(samples, "evaluation data")
    return samples


def score_samples(detector: Detector, samples: list[Sample], perturbation: Perturbation | None = None,
                  batch_size: int = 256, progress: bool = False) -> tuple[np.ndarray, list[Sample], list[str]]:
    """Calibrated p_fake for every readable sample; unreadable ones are reported, not scored."""
    from tqdm import tqdm

    order: list[Sample] = []

    def feed():
        for s, blob in iter_sample_bytes(samples):
            order.append(s)
            if isinstance(blob, bytes) and perturbation is not None:
                try:
                    blob = perturbation(decode_bytes(blob, s.locator).pixels)
                except DecodeError as err:
                    blob = err
                except Exception as err:  # a perturbation that cannot apply to this image
                    blob = DecodeError(s.locator, f"perturbation {perturbation.label} failed ({err})")
            yield blob, s.locator

    kept: list[Sample] = []
    probs: list[float] = []
    errors: list[str] = []
    bar = tqdm(total=len(samples), disable=not progress, unit="img", leave=False, desc="evaluate")
    # Records arrive in input order, each after its input was fed: order[i] is record i's sample.
    # Evaluation measures the pixel detector alone: provenance is not read (and would cost time).
    for i, rec in enumerate(detector.predict_iter(feed(), batch_size=batch_size, provenance=False)):
        bar.update(1)
        if rec.error:
            errors.append(rec.error)
        else:
            kept.append(order[i])
            probs.append(rec.p_fake)
    bar.close()
    return np.array(probs), kept, errors


def evaluate(detector: Detector, samples: list[Sample], perturbations: list[Perturbation] | None = None,
             progress: bool = False) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    p, kept, errors = score_samples(detector, samples, progress=progress)
    if not kept:
        raise SourceError("no image of the evaluation data could be read")
    y = np.array([s.label for s in kept])
    t = detector.threshold
    result: dict[str, Any] = {
        "model": detector.name,
        "sources": sorted({s.source for s in samples}),
        "n_errors": len(errors),
        "errors": errors[:50],
        "overall": binary_metrics(y, p, t),
        "per_source": {},
        "per_generator": grouped_metrics(y, p, [s.generator for s in kept], t),
    }
    srcs = sorted({s.source for s in kept})
    if len(srcs) > 1:
        for src in srcs:
            rows = np.array([s.source == src for s in kept])
            result["per_source"][src] = binary_metrics(y[rows], p[rows], t)
    if perturbations:
        result["perturbations"] = {}
        for pert in perturbations:
            pp, pk, _ = score_samples(detector, samples, pert, progress=progress)
            yy = np.array([s.label for s in pk])
            entry = binary_metrics(yy, pp, t)
            entry["per_generator"] = grouped_metrics(yy, pp, [s.generator for s in pk], t)
            result["perturbations"][pert.label] = entry
    return result, y, p
