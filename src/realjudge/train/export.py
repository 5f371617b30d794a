"""From a finished run to a bundle: score fusion and calibration on the validation split, the
training provenance (sources and their sha256, split, history), then write_bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import write_bundle
from .batches import split_description
from .config import TrainConfig
from .scoring import calibrated_metrics, per_image, predict_logits


def export_bundle(trainer, out: str | Path, name: str, extra: dict[str, Any] | None = None) -> Path:
    """Calibrate `trainer`'s best weights on its validation split and write a bundle to `out`."""
    cfg, split, model, policy = trainer.cfg, trainer.split, trainer.model, trainer.policy
    # Model-card text from the config (intended_input, failure_modes), unless the caller gives its own.
    extra = dict(cfg.card or {}) | dict(extra or {})
    if model.fuses_scores:
        # Score fusion (NTF: head logit + proximity to the traces), fitted per image on validation.
        parts, labels = per_image(policy, fusion_parts(model, policy, split.val.pixels, trainer.device),
                                  split.val.labels, split.val.ids)
        extra["score_fusion"] = {"inputs": ["head_logit", "s_trace"], "weights": model.fit_fusion(parts, labels),
                                 "fitted_on": "validation split, per image"}
    logits, labels = per_image(policy, predict_logits(model, policy, split.val.pixels, trainer.device),
                               split.val.labels, split.val.ids)
    cal, metrics = calibrated_metrics(logits, labels, cfg.min_real_accuracy, cfg.threshold_rule)
    run_dir = trainer.run_dir
    training = {
        "sources": [s.__dict__ for s in cfg.sources],
        "source_sha256": source_hashes(cfg),
        "n_train": int(len(split.train.labels)),
        "init_from": cfg.init_from,
        "n_val": int(len(split.val.labels)),
        "val_split": split_description(cfg),
        "history": json.loads((run_dir / "history.json").read_text()),
    }
    if (run_dir / "stage1.json").exists():
        training["stage1_history"] = json.loads((run_dir / "stage1.json").read_text())
    return write_bundle(out, model, name=name, arch=cfg.arch, arch_kwargs=cfg.arch_kwargs, policy=policy,
                        calibration=cal, training=training, config=cfg.to_json(), val_metrics=metrics, extra=extra)


def fusion_parts(model, policy, pixels: np.ndarray, device="cpu", batch_size: int = 256) -> np.ndarray:
    """`model.fusion_parts` over many views (N x k), for models whose score is a fitted fusion."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            out.append(model.fusion_parts(policy.model_input(pixels[i:i + batch_size], device)).float().cpu().numpy())
    return np.concatenate(out)


def source_hashes(cfg: TrainConfig) -> dict[str, str | None]:
    import hashlib

    out: dict[str, str | None] = {}
    for s in cfg.sources:
        p = Path(s.path)
        if p.is_file() and p.stat().st_size < 2 * 1024**3:
            h = hashlib.sha256()
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[s.path] = h.hexdigest()
        else:
            out[s.path] = None
    return out
