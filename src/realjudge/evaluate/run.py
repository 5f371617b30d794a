"""Score a labelled data set with a detector (optionally perturbed) and compute its metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.decode import decode_bytes
from ..data.layouts import open_source, require_labels
from ..data.samples import Sample, iter_sample_bytes
from ..detector import Detector
from ..errors import DecodeError, SourceError, UsageError
from ..metrics import binary_metrics, grouped_metrics
from ..perturb import Perturbation


def load_labelled(paths: list[str], layout: str = "auto", reals: list[str] | tuple = (), fakes: list[str] | tuple = (),
                  what: str = "evaluation data") -> list[Sample]:
    """Samples of labelled sources, plus sources whose images are all real (`reals`) or all fake (`fakes`)."""
    if not (paths or reals or fakes):
        raise UsageError("no data: give a labelled SOURCE, or folders with --real DIR and --fake DIR")
    samples: list[Sample] = []
    for p in paths:
        samples += open_source(p, layout)
    for p in reals:
        samples += open_source(p, "auto", label=0)
    for p in fakes:
        samples += open_source(p, "auto", label=1)
    require_labels(samples, what)
    return samples


def score_samples(detector, samples: list[Sample], perturbation: Perturbation | None = None,
                  batch_size: int = 256, progress: bool = False) -> tuple[np.ndarray, list[Sample], list[str]]:
    """Calibrated p_fake for every readable sample; unreadable ones are reported, not scored.

    `detector` is a Detector or a Router (realjudge.load() with no name): a router picks the detector
    by each image's size, exactly as `realjudge detect` does."""
    p, kept, errors, _records = score_records(detector, samples, perturbation, batch_size, progress)
    return p, kept, errors


def score_records(detector, samples: list[Sample], perturbation: Perturbation | None = None,
                  batch_size: int = 256, progress: bool = False):
    """`score_samples` plus the record of every kept sample (its model, threshold and warnings)."""
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
    records = []
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
            records.append(rec)
    bar.close()
    return np.array(probs), kept, errors, records


def evaluate(detector: Detector, samples: list[Sample], perturbations: list[Perturbation] | None = None,
             progress: bool = False) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    p, kept, errors, records = score_records(detector, samples, progress=progress)
    if not kept:
        raise SourceError("no image of the evaluation data could be read")
    y = np.array([s.label for s in kept])
    # Each image is judged by the threshold of the detector that scored it (a router may use several).
    t = np.array([r.threshold for r in records], np.float64)
    models = [r.model for r in records]
    result: dict[str, Any] = {
        "model": detector.name,
        "models": {m: models.count(m) for m in sorted(set(models))},
        "n_warned": sum(bool(r.warnings) for r in records),
        "warnings": sorted({w for r in records for w in r.warnings})[:10],
        "sources": sorted({s.source for s in samples}),
        "n_errors": len(errors),
        "errors": errors[:50],
        "overall": binary_metrics(y, p, t),
        "per_source": {},
        "per_generator": grouped_metrics(y, p, [s.generator for s in kept], t),
    }
    if len(result["models"]) > 1:
        result["per_model"] = {m: binary_metrics(y[rows], p[rows], t[rows]) for m in result["models"]
                               for rows in [np.array([x == m for x in models])]}
    srcs = sorted({s.source for s in kept})
    if len(srcs) > 1:
        for src in srcs:
            rows = np.array([s.source == src for s in kept])
            result["per_source"][src] = binary_metrics(y[rows], p[rows], t[rows])
    if perturbations:
        result["perturbations"] = {}
        for pert in perturbations:
            pp, pk, _, prec = score_records(detector, samples, pert, progress=progress)
            yy = np.array([s.label for s in pk])
            tt = np.array([r.threshold for r in prec], np.float64)
            entry = binary_metrics(yy, pp, tt)
            entry["per_generator"] = grouped_metrics(yy, pp, [s.generator for s in pk], tt)
            result["perturbations"][pert.label] = entry
    return result, y, p
