"""Ensembles of bundles: mean logit, calibration on the shared validation split, explanations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import make_images


@pytest.fixture(scope="module")
def second_bundle(tiny_flat, tmp_path_factory):
    from realjudge.train.config import TrainConfig
    from realjudge.train.engine import Trainer

    tmp = tmp_path_factory.mktemp("second")
    cfg = TrainConfig(arch="cifake-cnn", arch_kwargs={"n_conv": 2, "filters": 4, "units": 8},
                      sources=[{"path": str(tiny_flat)}], val_fraction=0.25, epochs=3, batch_size=16, lr=1e-2,
                      threads=1, seed=7)
    trainer = Trainer(cfg, tmp / "run", progress=False)
    trainer.fit()
    return trainer.export(tmp / "bundle", "second")


def test_ensemble_is_the_mean_of_its_members(tiny_bundle, second_bundle, tmp_path):
    import realjudge
    from realjudge.train.stacking import combine

    out = combine([str(tiny_bundle), str(second_bundle)], tmp_path / "ens", "both")
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["arch"] == "ensemble" and len(meta["arch_kwargs"]["members"]) == 2
    assert meta["val_metrics"]["n"] == meta["training"]["n_val"] > 0 and meta["training"]["source_sha256"]
    assert len(meta["training"]["member_val"]) == 2 and "Ensemble" in (out / "MODEL_CARD.md").read_text()

    ens = realjudge.load(str(out), device="cpu")
    a, b = realjudge.load(str(tiny_bundle), device="cpu"), realjudge.load(str(second_bundle), device="cpu")
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32))
    with torch.inference_mode():
        assert torch.allclose(ens.model(x), (a.model(x) + b.model(x)) / 2, atol=1e-5)
    img = make_images(1, seed=3)[1][0]
    rec = ens.predict(img)
    assert rec.model == "both" and rec.verdict in ("real", "fake", "uncertain")
    # Grad-CAM sums every member's map.
    exp = ens.explain(img, method="gradcam")
    assert exp.heatmap.shape == (32, 32) and exp.heatmap.max() > 0


def test_ensemble_refuses_mismatched_members(tiny_bundle, tmp_path):
    from realjudge.train.stacking import combine
    from realjudge.errors import UsageError

    with pytest.raises(UsageError, match="at least two"):
        combine([str(tiny_bundle)], tmp_path / "x", "x")
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_bundle.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    meta = json.loads((other / "bundle.json").read_text())
    meta["input_policy"]["size"] = 48
    (other / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="input policy differs"):
        combine([str(tiny_bundle), str(other)], tmp_path / "x", "x")


def test_ensemble_command(tiny_bundle, second_bundle, tmp_path):
    from realjudge.cli import main

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"notes": "Two tiny networks, averaged."}))
    res = CliRunner().invoke(main, ["ensemble", str(tiny_bundle), str(second_bundle), "--out", str(tmp_path / "e"),
                                    "--name", "pair", "--min-real-accuracy", "0.9", "--card", str(card), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "validation: accuracy" in res.output
    cal = json.loads((tmp_path / "e" / "bundle.json").read_text())["calibration"]
    assert "0.9" in cal["rule"]
    assert "Two tiny networks, averaged." in (tmp_path / "e" / "MODEL_CARD.md").read_text()
    card.write_text(json.dumps({"note": "typo"}))
    res = CliRunner().invoke(main, ["ensemble", str(tiny_bundle), str(second_bundle), "--out", str(tmp_path / "g"),
                                    "--card", str(card), "--no-progress"])
    assert res.exit_code == 2 and "unknown field(s) note" in res.output
    res = CliRunner().invoke(main, ["ensemble", str(tiny_bundle), "--out", str(tmp_path / "f")])
    assert res.exit_code == 2 and "at least two" in res.output
