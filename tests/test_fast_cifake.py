"""What the fast CIFAKE detector is made with: distillation from trained bundles, bfloat16 training,
batch norm folded for inference, and ensembles whose members differ only in their test-time views."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from realjudge.errors import UsageError


ONE_STAGE = {"blocks": [1], "strides": [1]}


def _config(tiny_flat, **kw):
    from realjudge.train.config import TrainConfig

    base = dict(arch="resnet", arch_kwargs={"widths": [4, 8], "blocks": [1, 1], "strides": [1, 2]},
                sources=[{"path": str(tiny_flat)}], val_fraction=0.25, epochs=1, batch_size=16, lr=1e-2, threads=1)
    return TrainConfig(**(base | kw))


def test_distillation_blends_the_teachers_logits_into_the_targets(tiny_flat, tiny_bundle, tmp_path):
    import realjudge
    from realjudge.train.engine import Trainer

    cfg = _config(tiny_flat, distill_from=[str(tiny_bundle)], distill_weight=0.75, distill_temperature=2.0)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    split, soft = trainer.split, trainer.soft
    teacher = realjudge.load(str(tiny_bundle), device="cpu")
    logits = np.concatenate([teacher.logits(split.train.pixels[i:i + 64]) for i in range(0, len(soft), 64)])
    want = 0.25 * split.train.labels + 0.75 / (1 + np.exp(-logits / 2.0))
    assert np.allclose(soft, want, atol=1e-5)
    assert not np.allclose(soft, split.train.labels)  # the teacher changed the targets
    saved = tmp_path / "run" / "teacher_logits.safetensors"
    assert saved.exists()

    # A resumed run reads the saved logits instead of scoring the training set again.
    cfg2 = _config(tiny_flat, distill_from=[str(tiny_bundle)], distill_weight=0.75, distill_temperature=2.0, epochs=2)
    again = Trainer(cfg2, tmp_path / "run", progress=False)
    before = saved.stat().st_mtime_ns
    again.fit(resume=True)
    assert saved.stat().st_mtime_ns == before and np.allclose(again.soft, soft)


def test_distillation_refuses_a_teacher_of_another_input_size(tiny_flat, tiny_bundle, tmp_path):
    from realjudge.train.engine import Trainer

    cfg = _config(tiny_flat, distill_from=[str(tiny_bundle)], policy={"size": 16})
    with pytest.raises(UsageError, match="distill_from: .* 32 px views, the student resize 16 px"):
        Trainer(cfg, tmp_path / "run", progress=False).fit()


@pytest.mark.parametrize("key,value,message", [("precision", "fp16", r"precision must be float32 or bfloat16 \(or fp32, bf16\)"),
                                               ("distill_weight", 1.5, "distill_weight must be in"),
                                               ("distill_temperature", 0, "distill_temperature must be > 0")])
def test_bad_precision_and_distillation_settings_are_refused(tiny_flat, key, value, message):
    with pytest.raises(UsageError, match=message):
        _config(tiny_flat, **{key: value})


def test_bfloat16_training_learns_and_writes_float32_weights(tiny_flat, tmp_path):
    from realjudge.train.engine import Trainer

    trainer = Trainer(_config(tiny_flat, precision="bf16", epochs=2), tmp_path / "run", progress=False)  # older spelling
    history = trainer.fit()["history"]
    assert all(np.isfinite(h["train_loss"]) for h in history)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bfloat16"


@pytest.mark.parametrize("arch,kwargs", [("resnet", {"widths": [8, 16], "blocks": [1, 2], "strides": [1, 2]}),
                                         ("ensemble", {"members": [{"arch": "resnet", "arch_kwargs": ONE_STAGE | {"widths": [4]}},
                                                                   {"arch": "resnet", "arch_kwargs": ONE_STAGE | {"widths": [8]}}]})])
def test_folding_batch_norm_keeps_the_function(arch, kwargs):
    from realjudge.models.folding import fold_batchnorm
    from realjudge.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(arch, **kwargs)
    model.train()
    with torch.no_grad():  # batch statistics that are not the identity, so that a wrong fold shows
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    model.eval()
    x = torch.randn(8, 3, 32, 32)
    folded = fold_batchnorm(model, x)
    assert folded is not model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    with torch.inference_mode():
        assert torch.allclose(folded(x), model(x), atol=1e-4)


def test_folding_leaves_a_network_without_batch_norm_alone():
    from realjudge.models.folding import fold_batchnorm
    from realjudge.models.registry import create_model

    model = create_model("cifake-cnn").eval()
    assert fold_batchnorm(model, torch.randn(2, 3, 32, 32)) is model


def test_folding_refuses_a_fold_that_changes_the_function():
    from realjudge.models.folding import fold_batchnorm

    class Reuses(torch.nn.Module):  # uses the conv's output before the batch norm as well
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn1 = torch.nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv1(x)
            return (self.bn1(y) + y).mean((1, 2, 3))

    model = Reuses().eval()
    with torch.no_grad():
        model.bn1.running_var.fill_(4.0)
    assert fold_batchnorm(model, torch.randn(2, 3, 8, 8)) is model


def test_detector_scores_through_the_folded_network(tiny_flat, tmp_path):
    import realjudge
    from realjudge.train.engine import Trainer

    trainer = Trainer(_config(tiny_flat), tmp_path / "run", progress=False)
    trainer.fit()
    det = realjudge.load(str(trainer.export(tmp_path / "bundle", "tiny-resnet")), device="cpu")
    views = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    got = det.logits(views)
    assert det._folded is not det.model
    with torch.inference_mode():
        want = det.model(det.policy.model_input(views, "cpu")).numpy()
    assert np.allclose(got, want, atol=1e-4)
    assert det.with_threshold(0.3)._folded is det._folded


def test_an_ensemble_takes_its_first_members_test_time_views(tiny_bundle, tmp_path):
    """Members trained with other test-time views can join; the ensemble scores with the first's."""
    from realjudge.bundle import load_bundle
    from realjudge.train.stacking import combine

    other = tmp_path / "mirrored"
    other.mkdir()
    for f in tiny_bundle.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    meta = json.loads((other / "bundle.json").read_text())
    meta["input_policy"] |= {"mirror": True, "shifts": [[1, 0]]}
    (other / "bundle.json").write_text(json.dumps(meta))
    out = combine([str(tiny_bundle), str(other)], tmp_path / "ens", "ens")
    assert load_bundle(out)[1].policy == load_bundle(tiny_bundle)[1].policy
    meta["input_policy"]["size"] = 16
    (other / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="input policy differs"):
        combine([str(tiny_bundle), str(other)], tmp_path / "ens2", "ens2")


def test_calibrate_with_new_views_refits_the_whole_calibration(tiny_bundle, tiny_flat, tmp_path):
    """Dropping (or adding) test-time views changes the logits: temperature, threshold, band and the
    validation metrics are all chosen again on the validation split."""
    from click.testing import CliRunner

    import realjudge
    from realjudge.cli import main
    from realjudge.train.scoring import metrics_at

    res = CliRunner().invoke(main, ["calibrate", str(tiny_bundle), "--data", str(tiny_flat), "--views", "mirror",
                                    "--out", str(tmp_path / "mirrored"), "--scores", str(tmp_path / "val.npz")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "mirrored" / "bundle.json").read_text())
    assert meta["input_policy"]["mirror"] is True and meta["threshold"] == meta["calibration"]["threshold"]
    det = realjudge.load(str(tmp_path / "mirrored"), device="cpu")
    stored = np.load(tmp_path / "val.npz", allow_pickle=False)
    assert meta["val_metrics"] == json.loads(json.dumps(metrics_at(det.calibration, stored["logits"], stored["labels"])))
    assert "Recalibrated for mirrored views with the model step in float32" in (tmp_path / "mirrored" / "MODEL_CARD.md").read_text()
    # The logits it calibrated on are the mirrored detector's own.
    imgs = sorted((tiny_flat / "real").iterdir())[:3]
    assert len(det.predict([str(p) for p in imgs])) == 3


def test_calibrate_can_choose_ten_views(tiny_bundle, tiny_flat, tmp_path):
    from click.testing import CliRunner

    import realjudge
    from realjudge.cli import main

    res = CliRunner().invoke(main, ["calibrate", str(tiny_bundle), "--data", str(tiny_flat), "--views", "mirror-shift4",
                                    "--out", str(tmp_path / "ten")])
    assert res.exit_code == 0, res.output
    det = realjudge.load(str(tmp_path / "ten"), device="cpu")
    assert det.policy.mirror and sorted(det.policy.shifts) == [(-1, 0), (0, -1), (0, 1), (1, 0)]
    assert "Recalibrated for 10 test-time views" in (tmp_path / "ten" / "MODEL_CARD.md").read_text()


def test_calibrate_names_the_refitted_bundle_and_takes_its_card(tiny_bundle, tiny_flat, tmp_path):
    """How a recalibrated bundle ships under another name: --name and --card, checked before any scoring."""
    from click.testing import CliRunner

    import realjudge
    from realjudge.cli import main

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"notes": "The tiny network on mirrored views."}))
    res = CliRunner().invoke(main, ["calibrate", str(tiny_bundle), "--data", str(tiny_flat), "--views", "mirror",
                                    "--out", str(tmp_path / "named"), "--name", "tiny-mirror", "--card", str(card)])
    assert res.exit_code == 0, res.output
    det = realjudge.load(str(tmp_path / "named"), device="cpu")
    assert det.name == "tiny-mirror" and det.info.meta["notes"] == "The tiny network on mirrored views."
    card_md = (tmp_path / "named" / "MODEL_CARD.md").read_text()
    assert card_md.startswith("# tiny-mirror") and "The tiny network on mirrored views." in card_md
    assert "Recalibrated" not in card_md  # the card's notes replace the automatic one
    res = CliRunner().invoke(main, ["calibrate", str(tiny_bundle), "--name", "x"])
    assert res.exit_code == 2 and "give --out" in res.output
    card.write_text(json.dumps({"note": "typo"}))
    res = CliRunner().invoke(main, ["calibrate", str(tiny_bundle), "--out", str(tmp_path / "typo"), "--card", str(card)])
    assert res.exit_code == 2 and f"{card}: unknown field(s) note" in res.output and not (tmp_path / "typo").exists()


def test_folding_leaves_a_model_that_cannot_be_copied_alone():
    import threading

    from realjudge.models.folding import fold_batchnorm
    from realjudge.models.registry import create_model

    model = create_model("resnet", widths=[4], blocks=[1], strides=[1]).eval()
    model.lock = threading.Lock()  # what a serving wrapper may hold
    assert fold_batchnorm(model, torch.randn(2, 3, 32, 32)) is model
