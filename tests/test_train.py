import json

import pytest

from realjudge.errors import UsageError
from realjudge.train.config import TrainConfig, load_config
from realjudge.train.engine import Trainer, lr_at


def test_config_validation_is_early_and_clear(tmp_path):
    with pytest.raises(UsageError, match="unknown key"):
        TrainConfig.from_json({"epoch": 3})
    with pytest.raises(UsageError, match="val_fraction"):
        TrainConfig(val_fraction=1.5)
    with pytest.raises(UsageError, match="augmentation"):
        TrainConfig(augment=["mixup"])
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"arch": "cifake-cnn", "epochs": 3}))
    cfg = load_config(str(p), ["arch_kwargs.filters=8", "lr=0.01"], epochs=5)
    assert cfg.arch_kwargs == {"filters": 8} and cfg.lr == 0.01 and cfg.epochs == 5


def test_unknown_arch_option_fails_early():
    from realjudge.models import create_model

    with pytest.raises(UsageError, match="unknown option"):
        create_model("cifake-cnn", filtres=3)


def test_onecycle_schedule_shape():
    cfg = TrainConfig(lr=1.0, schedule="onecycle", warmup_fraction=0.2)
    lrs = [lr_at(cfg, s, 100) for s in range(100)]
    assert lrs[0] < 0.1 and max(lrs) == pytest.approx(1.0, abs=0.05) and lrs[-1] < 0.01


def test_resume_after_interruption_continues_and_matches(tiny_flat, tmp_path, monkeypatch):
    monkeypatch.setenv("REALJUDGE_CACHE", str(tmp_path / "cache"))
    base = dict(arch="cifake-cnn", arch_kwargs={"n_conv": 1, "filters": 4, "units": 8},
                sources=[{"path": str(tiny_flat)}], batch_size=16, threads=1, val_fraction=0.25)
    whole = Trainer(TrainConfig(**base, epochs=3), tmp_path / "whole", progress=False).fit()
    Trainer(TrainConfig(**base, epochs=1), tmp_path / "part", progress=False).fit()
    # A killed run resumes from its last checkpoint with the full schedule.
    (tmp_path / "part" / "config.json").unlink()
    meta = json.loads((tmp_path / "part" / "checkpoint.json").read_text())
    assert meta["epoch"] == 1
    resumed = Trainer(TrainConfig(**base, epochs=3), tmp_path / "part", progress=False)
    with pytest.raises(UsageError, match="--resume"):
        resumed.fit(resume=False)
    out = resumed.fit(resume=True)
    assert [h["epoch"] for h in out["history"]] == [1, 2, 3]
    assert (tmp_path / "part" / "config.json").exists() and (tmp_path / "part" / "versions.json").exists()
    # The resumed run ends on the same schedule as the uninterrupted one.
    assert out["history"][-1]["lr"] == pytest.approx(whole["history"][-1]["lr"])


def test_train_cli_end_to_end(tiny_flat, tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "realjudge", "train", "cifake-cnn", "--real", str(tiny_flat / "real"),
                          "--fake", str(tiny_flat / "fake"), "--epochs", "2", "--set", "arch_kwargs.filters=4",
                          "--set", "threads=1", "--run-dir", str(tmp_path / "run"), "--name", "mine", "--no-progress"],
                         capture_output=True, text=True, env={"REALJUDGE_CACHE": str(tmp_path / "c"), "PATH": ""})
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "run" / "bundle" / "bundle.json").read_text())
    assert meta["name"] == "mine" and meta["arch_kwargs"] == {"filters": 4}
    assert len(meta["training"]["history"]) == 2
