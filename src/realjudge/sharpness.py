"""The trivial sharpness score: mean |Laplacian| of the luma, no training. Every comparison table
carries it, because a detector that only learned "smoother means fake" beats chance on many
generators while calling every denoised, downscaled or upscaled photograph fake. As a fake score it
is negated (smoother scores higher)."""

from __future__ import annotations

import numpy as np

from .data.decode import decode_bytes
from .data.samples import Sample, iter_sample_bytes
from .errors import DecodeError


def mean_abs_laplacian(pixels: np.ndarray) -> float:
    """Mean |4-neighbour Laplacian| of the luma (0..255) over the image's interior."""
    y = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    return float(np.abs(lap).mean()) if lap.size else 0.0


def sharpness_fake_scores(samples: list[Sample], perturbation=None) -> tuple[np.ndarray, np.ndarray]:
    """(fake scores = -sharpness, labels) of the readable samples, optionally after a perturbation."""
    scores, labels = [], []
    for s, blob in iter_sample_bytes(samples):
        if not isinstance(blob, bytes):
            continue
        try:
            px = decode_bytes(blob, s.locator).pixels
            if perturbation is not None:
                px = perturbation(px)
        except (DecodeError, ValueError):
            continue
        scores.append(-mean_abs_laplacian(px))
        labels.append(s.label)
    return np.array(scores), np.array(labels)
