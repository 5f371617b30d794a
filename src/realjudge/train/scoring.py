"""Validation scoring shared by training, evaluation protocols and search: logits with the policy's
test-time views, per-image aggregation of crops, calibrated metrics."""

from __future__ import annotations

import numpy as np

from ..calibrate import calibrate
from ..metrics import binary_metrics
from ..preprocess import InputPolicy


def calibrated_metrics(logits: np.ndarray, labels: np.ndarray, min_real_accuracy: float | None = None,
                       threshold_rule: str = "balanced"):
    """Calibrate per-image validation logits; the bundle's validation metrics at that calibration."""
    cal = calibrate(logits, labels, min_real_accuracy=min_real_accuracy, threshold_rule=threshold_rule)
    return cal, metrics_at(cal, logits, labels)


def metrics_at(cal, logits: np.ndarray, labels: np.ndarray) -> dict:
    """Validation metrics of per-image logits at calibration `cal` (fake = positive), with the share in its band."""
    p = cal.probability(logits)
    metrics = binary_metrics(labels, p, cal.threshold)
    lo, hi = cal.uncertain_band
    metrics["uncertain_share"] = float(np.mean((p > lo) & (p < hi)))
    return metrics


def per_image(policy: InputPolicy, values: np.ndarray, labels: np.ndarray, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Crop policies score an image by the mean over its views (as Detector does): group rows by image."""
    if policy.kind != "crop":
        return values, labels
    index: dict[str, int] = {}
    for i in ids:
        index.setdefault(i, len(index))
    g = np.array([index[i] for i in ids])
    counts = np.bincount(g, minlength=len(index)).astype(np.float64)
    if values.ndim == 1:
        agg = np.bincount(g, values, minlength=len(index)) / counts
    else:
        agg = np.stack([np.bincount(g, values[:, j], minlength=len(index)) / counts for j in range(values.shape[1])], 1)
    lab = np.zeros(len(index), labels.dtype)
    lab[g] = labels
    return agg, lab


def predict_logits(model, policy: InputPolicy, pixels: np.ndarray, device="cpu", batch_size: int = 512) -> np.ndarray:
    """Logits of model-sized uint8 views, with the policy's test-time views (shifts, mirror) averaged in
    exactly as Detector averages them at detection."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            variants = policy.test_time_views(pixels[i:i + batch_size])
            logits = sum(model(policy.model_input(v, device)) for v in variants) / len(variants)
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)
