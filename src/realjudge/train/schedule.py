"""Learning-rate schedules."""

from __future__ import annotations

import math

from .config import TrainConfig


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate at `step` of `total`: one-cycle (linear warm-up, cosine down), cosine or constant."""
    if cfg.schedule == "constant" or total <= 1:
        return cfg.lr
    frac = step / total
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * frac))
    warm = max(cfg.warmup_fraction, 1e-6)
    if frac < warm:
        return cfg.lr * (0.04 + 0.96 * frac / warm)
    return cfg.lr * (0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm)))) + 1e-6
