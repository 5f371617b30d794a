"""Metrics with fake as the positive class."""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(labels: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """accuracy, precision, recall, F1, ROC-AUC, AP, real/fake accuracy and the confusion matrix.

    The confusion matrix is `[[TN, FP], [FN, TP]]`: rows are the truth (real, fake), columns the verdict.
    AUC and AP are None when only one class is present.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    # One threshold, or one per image (images routed to detectors with different thresholds).
    thr = np.asarray(threshold, dtype=np.float64)
    pred = (p >= thr).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    n = len(y)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both = 0 < y.sum() < n
    out: dict[str, Any] = {
        "n": n,
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "threshold": _one_threshold(thr),
        "accuracy": (tp + tn) / n if n else None,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "real_accuracy": tn / (tn + fp) if tn + fp else None,
        "fake_accuracy": tp / (tp + fn) if tp + fn else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "ap": float(average_precision_score(y, p)) if both else None,
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }
    ra, fa = out["real_accuracy"], out["fake_accuracy"]
    out["balanced_accuracy"] = (ra + fa) / 2 if ra is not None and fa is not None else None
    return out


def _one_threshold(thr: np.ndarray) -> float | None:
    """The threshold, or None when images were judged under different ones (see `per_model`)."""
    if thr.ndim == 0:
        return float(thr)
    values = np.unique(thr)
    return float(values[0]) if len(values) == 1 else (None if len(values) else None)


def grouped_metrics(labels: np.ndarray, p_fake: np.ndarray, groups: list[str | None], threshold) -> dict[str, Any]:
    """Per generator: its fakes against all real images of the set (so AP is defined for each)."""
    thr = np.asarray(threshold, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    g = np.array([x or "" for x in groups], dtype=object)
    real = y == 0
    out = {}
    for name in sorted({x for x, lab in zip(g, y) if lab == 1 and x}):
        rows = real | ((y == 1) & (g == name))
        out[name] = binary_metrics(y[rows], p[rows], thr if thr.ndim == 0 else thr[rows])
    if len(out) > 1:
        aps = [m["ap"] for m in out.values() if m["ap"] is not None]
        out["_mean_ap"] = float(np.mean(aps)) if aps else None
    return out
