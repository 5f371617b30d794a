import json

import pytest

from realjudge.errors import UsageError
from realjudge.train.config import TrainConfig, load_config
from realjudge.train.engine import Trainer
from realjudge.train.schedule import lr_at


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


class _Killed(BaseException):
    """Stands for a kill: a BaseException, so nothing in the engine catches it."""


def _kill_after_batches(monkeypatch, n_batches):
    """Interrupt the next fits after `n_batches` training batches (the engine augments every batch first)."""
    from realjudge.train import engine

    real, calls = engine.augment_batch, []

    def augment(*a, **kw):
        calls.append(1)
        if len(calls) > n_batches:
            raise _Killed
        return real(*a, **kw)

    monkeypatch.setattr(engine, "augment_batch", augment)


def _model_tensors(run_dir):
    from safetensors.torch import load_file

    return load_file(run_dir / "best.safetensors"), load_file(run_dir / "checkpoint.safetensors")


def assert_same_tensors(a, b):
    import torch

    assert set(a) == set(b)
    different = [k for k in a if not (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]
    assert not different, f"tensors differ: {different}"


def assert_same_history(a, b):
    """Every per-epoch metric, exactly (wall-clock seconds aside)."""
    def strip(h):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in h]

    assert strip(a) == strip(b)


# On CPU with one thread the engine is deterministic: every epoch reseeds numpy (batch order,
# augmentation) and torch from (seed, epoch), and a checkpoint holds the weights, the optimizer state,
# the weight average and the early-stopping counters, so the resumed run must be bit-identical.
@pytest.mark.parametrize("extra", [{}, {"optimizer": "sgd", "ema_decay": 0.9, "monitor": "val_accuracy",
                                        "augment": ["hflip", "shift", "cutout", "jpeg", "noise"]}],
                         ids=["adamw", "sgd-ema-augment"])
def test_resume_after_interruption_continues_and_matches(tiny_flat, tmp_path, monkeypatch, extra):
    monkeypatch.setenv("REALJUDGE_CACHE", str(tmp_path / "cache"))
    base = dict(arch="cifake-cnn", arch_kwargs={"n_conv": 1, "filters": 4, "units": 8},
                sources=[{"path": str(tiny_flat)}], batch_size=16, threads=1, val_fraction=0.25) | extra
    straight = Trainer(TrainConfig(**base, epochs=3), tmp_path / "whole", progress=False)
    whole = straight.fit()
    steps = len(straight.split.train.labels) // 16
    assert steps >= 2
    # Killed halfway through epoch 2 (of the same 3-epoch schedule), after the epoch-1 checkpoint.
    with monkeypatch.context() as m:
        _kill_after_batches(m, steps + steps // 2)
        with pytest.raises(_Killed):
            Trainer(TrainConfig(**base, epochs=3), tmp_path / "part", progress=False).fit()
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
    # Epoch 1 was not trained again: its entry (timing included) is the checkpoint's.
    assert out["history"][0] == meta["history"][0]
    # ... and the result is bit-identical to the uninterrupted run: every per-epoch metric, the best
    # weights, the last weights with the optimizer state (and the average), and the model fit returns.
    assert_same_history(out["history"], whole["history"])
    assert_same_history(json.loads((tmp_path / "part" / "history.json").read_text()), whole["history"])
    for a, b in zip(_model_tensors(tmp_path / "part"), _model_tensors(tmp_path / "whole")):
        assert_same_tensors(a, b)
    assert_same_tensors(resumed.model.state_dict(), straight.model.state_dict())


def test_extending_a_finished_run_equals_a_longer_run_on_a_constant_schedule(tiny_flat, tmp_path, monkeypatch):
    monkeypatch.setenv("REALJUDGE_CACHE", str(tmp_path / "cache"))
    base = dict(arch="cifake-cnn", arch_kwargs={"n_conv": 1, "filters": 4, "units": 8},
                sources=[{"path": str(tiny_flat)}], batch_size=16, threads=1, val_fraction=0.25, schedule="constant")
    whole = Trainer(TrainConfig(**base, epochs=2), tmp_path / "whole", progress=False).fit()
    Trainer(TrainConfig(**base, epochs=1), tmp_path / "ext", progress=False).fit()
    extended = Trainer(TrainConfig(**base, epochs=2), tmp_path / "ext", progress=False).fit(resume=True)
    assert_same_history(extended["history"], whole["history"])
    for a, b in zip(_model_tensors(tmp_path / "ext"), _model_tensors(tmp_path / "whole")):
        assert_same_tensors(a, b)
    # Not so on a one-cycle (or cosine) schedule: every step's learning rate depends on the run's
    # total length, so a 1-epoch run continued to 3 epochs is another run than 3 epochs straight
    # (which is why the resume test above interrupts a 3-epoch run instead).
    cfg = TrainConfig(**(base | {"schedule": "onecycle"}))
    assert lr_at(cfg, 3, 4) != pytest.approx(lr_at(cfg, 3, 12))


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


def test_shift_and_cutout_move_or_blank_pixels_without_inventing_values():
    import numpy as np

    from realjudge.train.batches import augment_batch

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    shifted = augment_batch(batch, ["shift"], np.random.default_rng(1))
    assert shifted.shape == batch.shape and shifted.dtype == np.uint8
    assert not np.array_equal(shifted, batch)
    # A shift only moves pixels (reflected at the edges): the centre of every image is a window of the original.
    for orig, new in zip(batch, shifted):
        centre = new[4:28, 4:28]
        assert any(np.array_equal(centre, orig[4 + dy:28 + dy, 4 + dx:28 + dx])
                   for dy in range(-4, 5) for dx in range(-4, 5))
    cut = augment_batch(batch, ["cutout"], np.random.default_rng(2))
    changed = (cut != batch).any(axis=(1, 2, 3))
    assert 0.2 < changed.mean() < 0.8  # about half of the images lose one square
    for orig, new in zip(batch[changed], cut[changed]):
        mask = (new != orig).any(-1)
        ys, xs = np.nonzero(mask)
        assert (ys.max() - ys.min() + 1) <= 12 and (xs.max() - xs.min() + 1) <= 12
    assert np.array_equal(augment_batch(batch, ["shift", "cutout"], np.random.default_rng(3)).shape, batch.shape)
    assert np.array_equal(batch, np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))  # input untouched


def test_weight_average_tracks_the_model_and_survives_resume(tiny_flat, tmp_path, monkeypatch):
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from realjudge.models import create_model
    from realjudge.train.averaging import WeightAverage

    net = torch.nn.Linear(2, 1)
    avg = WeightAverage(net, 0.9)
    with torch.no_grad():
        net.weight.add_(1.0)
    before = avg.model.weight.clone()
    avg.update(net)
    # Moves part of the way towards the new weights, never past them.
    assert ((avg.model.weight - before).abs() > 0).all() and ((avg.model.weight - net.weight).abs() > 0).all()
    assert not avg.model.weight.requires_grad

    monkeypatch.setenv("REALJUDGE_CACHE", str(tmp_path / "cache"))
    base = dict(arch="cifake-cnn", arch_kwargs={"n_conv": 1, "filters": 4, "units": 8}, sources=[{"path": str(tiny_flat)}],
                batch_size=16, threads=1, val_fraction=0.25, ema_decay=0.99, augment=["hflip", "shift", "cutout"])
    Trainer(TrainConfig(**base, epochs=1), tmp_path / "run", progress=False).fit()
    saved = load_file(tmp_path / "run" / "checkpoint.safetensors")
    assert any(k.startswith("ema.") for k in saved)
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["ema_steps"] > 0
    resumed = Trainer(TrainConfig(**base, epochs=2), tmp_path / "run", progress=False)
    out = resumed.fit(resume=True)
    assert [h["epoch"] for h in out["history"]] == [1, 2]
    # The best checkpoint holds averaged weights, which differ from the raw weights of the last step.
    best = load_file(tmp_path / "run" / "best.safetensors")
    raw = {k[6:]: v for k, v in load_file(tmp_path / "run" / "checkpoint.safetensors").items() if k.startswith("model.")}
    assert any(not torch.equal(best[k], raw[k]) for k in best if best[k].dtype.is_floating_point)
    model = create_model("cifake-cnn", n_conv=1, filters=4, units=8)
    model.load_state_dict(best)
    assert np.isfinite(model(torch.zeros(1, 3, 32, 32)).detach().numpy()).all()
    with pytest.raises(UsageError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_init_from_starts_from_a_bundle_of_the_same_architecture(tiny_bundle, tiny_flat, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    monkeypatch.setenv("REALJUDGE_CACHE", str(tmp_path / "cache"))
    meta = json.loads((tiny_bundle / "bundle.json").read_text())
    base = dict(arch="cifake-cnn", arch_kwargs=meta["arch_kwargs"], sources=[{"path": str(tiny_flat)}],
                batch_size=16, threads=1, val_fraction=0.25, lr=1e-9, schedule="constant", augment=[])
    trainer = Trainer(TrainConfig(**base, epochs=1, init_from=str(tiny_bundle)), tmp_path / "ft", progress=False)
    trainer.fit()
    # At a vanishing learning rate the weights stay those of the bundle (batch-norm statistics aside).
    start = load_file(tiny_bundle / "model.safetensors")
    after = trainer.model.state_dict()
    assert all(torch.allclose(start[k], after[k], atol=1e-5) for k in start if "running" not in k and "num_batches" not in k)
    out = trainer.export(tmp_path / "b", "ft")
    assert json.loads((out / "bundle.json").read_text())["training"]["init_from"] == str(tiny_bundle)
    with pytest.raises(UsageError, match="not resnet"):
        Trainer(TrainConfig(**(base | {"arch": "resnet", "arch_kwargs": {}}), epochs=1, init_from=str(tiny_bundle)),
                tmp_path / "x", progress=False).fit()
    with pytest.raises(UsageError, match="no such file"):
        Trainer(TrainConfig(**base, epochs=1, init_from=str(tmp_path / "nope.safetensors")), tmp_path / "y", progress=False).fit()
