"""Combine trained bundles into one ensemble bundle, calibrated on the members' validation split.

The members must share the input policy and the validation split (same sources, same fraction):
otherwise the calibration would see images some member trained on. A member whose score is a fused
score (NTF) joins with its fusion, which lives in its weights; the fusion's three numbers were fitted
on that same validation split, as every member's checkpoint was chosen on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..card import check_card
from ..errors import UsageError


def combine(bundles: list[str], out: str | Path, name: str, sources: list[str] | None = None,
            progress: bool = False, min_real_accuracy: float | None = None, card: dict | None = None,
            threshold_rule: str = "balanced") -> Path:
    """Write an `ensemble` bundle of `bundles` to `out`; returns its folder. `card` may give the model
    card's `intended_input`, `failure_modes` and `notes` (default: the first member's, and a note
    naming the members)."""
    from ..bundle import load_bundle, write_bundle
    from ..models.stack import Ensemble
    from .batches import load_split, split_description
    from .config import TrainConfig
    from .export import source_hashes
    from .scoring import calibrated_metrics, per_image, predict_logits

    if len(bundles) < 2:
        raise UsageError("an ensemble needs at least two bundles")
    check_card(card or {})
    loaded = [load_bundle(b) for b in bundles]
    policy = loaded[0][1].policy
    configs = [info.meta.get("training_config", {}) for _, info in loaded]
    for (_, info), cfg in zip(loaded[1:], configs[1:]):
        # Test-time views (mirror, shifts) are the ensemble's own choice: the first member's apply to all.
        if not info.policy.same_input(policy):
            raise UsageError(f"{info.path}: input policy differs from {loaded[0][1].path}; members must share one")
        if cfg.get("val_fraction") != configs[0].get("val_fraction"):
            raise UsageError(f"{info.path}: validation fraction differs from {loaded[0][1].path}")
    for _, info in loaded:
        if info.arch == "ensemble":
            raise UsageError(f"{info.path}: an ensemble cannot join an ensemble; list its members instead")
    srcs = [{"path": p} for p in sources] if sources else configs[0].get("sources") or []
    if not srcs:
        raise UsageError("no validation data: give --data (the members' training sources)")

    members = [{"arch": info.arch, "arch_kwargs": info.arch_kwargs} for _, info in loaded]
    model = Ensemble(members)
    for member, (net, _) in zip(model.members, loaded):
        member.load_state_dict(net.state_dict())
    model.eval()

    cfg = TrainConfig(arch="ensemble", arch_kwargs={"members": members}, sources=srcs,
                      val_fraction=configs[0].get("val_fraction", 0.1), policy=policy.to_json())
    split = load_split(cfg, policy, progress)

    # Each member is scored once: the ensemble's logit is, by its definition, the mean of theirs.
    member_logits = [predict_logits(net, policy, split.val.pixels) for net, _ in loaded]
    logits, labels = per_image(policy, np.mean(member_logits, axis=0), split.val.labels, split.val.ids)
    cal, metrics = calibrated_metrics(logits, labels, min_real_accuracy, threshold_rule)
    member_metrics = []
    for ml, (_, info) in zip(member_logits, loaded):
        ml, _ = per_image(policy, ml, split.val.labels, split.val.ids)
        member_metrics.append({"bundle": info.path, "name": info.name,
                               "val_accuracy_at_logit_0": float(np.mean((ml > 0) == labels.astype(bool)))})
    training = {
        "sources": srcs,
        "source_sha256": source_hashes(cfg),
        "n_train": loaded[0][1].meta.get("training", {}).get("n_train"),
        "n_val": int(len(split.val.labels)),
        "val_split": split_description(cfg),
        "members": [{"name": info.name, "arch": info.arch, "training": info.meta.get("training", {}),
                     "training_config": info.meta.get("training_config", {})} for _, info in loaded],
        "member_val": member_metrics,
    }
    first = loaded[0][1].meta
    extra = {"intended_input": first.get("intended_input") or "", "failure_modes": first.get("failure_modes") or "",
             "notes": "Ensemble: the mean logit of " + ", ".join(f"`{m['name']}` ({m['val_accuracy_at_logit_0']:.4f} "
                                                                  "validation accuracy alone at logit 0)" for m in member_metrics)
                      + "; calibrated anew on the shared validation split."}
    extra |= card or {}
    return write_bundle(out, model, name=name, arch="ensemble", arch_kwargs={"members": members}, policy=policy,
                        calibration=cal, training=training, config=cfg.to_json(), val_metrics=metrics, extra=extra)
