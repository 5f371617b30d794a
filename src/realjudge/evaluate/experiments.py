"""Running protocols: train a detector on each protocol's training side, score its test side."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.samples import Sample, is_validation, split_key
from .protocols import VAL_SALT, Protocol, with_ids


def build_split(cfg, policy, train_samples: list[Sample], progress: bool = False):
    """Engine Split from explicit samples: the training side is split again (split key salted with
    `VAL_SALT`) into training and validation; validation gets the policy's detection views."""
    from ..train.batches import Split, load_views

    train_samples = with_ids(train_samples)
    val = [s for s in train_samples if is_validation(split_key(s), cfg.val_fraction, salt=VAL_SALT)]
    tr = [s for s in train_samples if not is_validation(split_key(s), cfg.val_fraction, salt=VAL_SALT)]
    return Split(load_views(tr, policy, cfg, progress, val_fraction=0.0),
                 load_views(val, policy, cfg, progress, train_side=False))


def train_detector(cfg, train_samples: list[Sample], run_dir: str | Path, name: str, progress: bool = False):
    """Train with the shared engine on explicit samples; returns (Detector, bundle path)."""
    from ..detector import load
    from ..train.engine import Trainer

    trainer = Trainer(cfg, run_dir, progress=progress)
    split = build_split(cfg, trainer.policy, train_samples, progress)
    trainer.fit(resume=(Path(run_dir) / "checkpoint.json").exists(), split=split)
    bundle = trainer.export(Path(run_dir) / "bundle", name)
    return load(str(bundle), "cpu"), bundle


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The figures a protocol table shows: AP, real/fake accuracy, and per generator real-acc/fake-acc/AP."""
    o = result["overall"]
    gens = {g: {"ap": m["ap"], "real_accuracy": m["real_accuracy"], "fake_accuracy": m["fake_accuracy"], "n_fake": m["n_fake"]}
            for g, m in result.get("per_generator", {}).items() if not g.startswith("_")}
    aps = [m["ap"] for m in gens.values() if m["ap"] is not None]
    out = {"ap": o["ap"], "roc_auc": o["roc_auc"], "accuracy": o["accuracy"], "real_accuracy": o["real_accuracy"],
           "fake_accuracy": o["fake_accuracy"], "n_real": o["n_real"], "n_fake": o["n_fake"], "per_generator": gens,
           "mean_ap": float(np.mean(aps)) if aps else o["ap"]}
    if result.get("perturbations"):
        out["perturbations"] = {k: {"ap": v["ap"], "real_accuracy": v["real_accuracy"], "fake_accuracy": v["fake_accuracy"]}
                                for k, v in result["perturbations"].items()}
    return out


def protocol_record(p: Protocol, result: dict[str, Any]) -> dict[str, Any]:
    """One protocol's stored result: what was trained and tested, and the summary of its evaluation."""
    return {"kind": p.kind, "meta": p.meta, "n_train": len(p.train), "n_test": len(p.test)} | summarise(result)


def run_protocols(protocols: list[Protocol], cfg, out_dir: str | Path, perturbations=None, progress: bool = False,
                  detector=None) -> dict[str, Any]:
    """Train (unless `detector` is given: then it is evaluated as is) and evaluate every protocol.
    Results are written to `out_dir/protocols.json` after each protocol, so a long run keeps its progress."""
    from .run import evaluate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "protocols.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for i, p in enumerate(protocols):
        if p.name in results:
            continue
        det = detector
        if det is None:
            det, _ = train_detector(replace(cfg), p.train, out_dir / f"run{i}", f"{cfg.arch}-{i}", progress)
        res, _, _ = evaluate(det, p.test, perturbations)
        results[p.name] = protocol_record(p, res)
        path.write_text(json.dumps(results, indent=2, default=float))
    return results
