"""The model step's number format: a bundle records the precision its calibration was fitted at,
the detector runs it where the hardware has it natively and falls back to float32 (saying so) where not."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import realjudge
from realjudge import precision as prec
from realjudge.cli import main
from realjudge.errors import UsageError

CPU = torch.device("cpu")


def _with_precision(bundle, tmp_path, value):
    out = tmp_path / f"bundle-{value}"
    shutil.copytree(bundle, out)
    meta = json.loads((out / "bundle.json").read_text())
    (out / "bundle.json").write_text(json.dumps(meta | {"precision": value}))
    return out


def test_bad_precision_names_are_refused():
    with pytest.raises(UsageError, match="precision must be one of"):
        prec.check_precision("fp16")
    with pytest.raises(UsageError, match="precision must be one of"):
        realjudge.load("cifake", device="cpu", precision="half")


def test_the_bundles_precision_is_used_where_the_hardware_has_it(monkeypatch):
    monkeypatch.setattr(prec, "native_bfloat16", lambda device: True)
    assert prec.resolve("bundle", "bfloat16", CPU) == ("bfloat16", "")
    assert prec.resolve("bundle", "float32", CPU) == ("float32", "")
    assert prec.resolve("float32", "bfloat16", CPU) == ("float32", "")


def test_without_native_bfloat16_the_step_falls_back_to_float32_and_says_so(monkeypatch):
    monkeypatch.setattr(prec, "native_bfloat16", lambda device: False)
    step, note = prec.resolve("bundle", "bfloat16", CPU)
    assert step == "float32" and "calibrated at bfloat16" in note
    with pytest.raises(UsageError, match="no native bfloat16"):
        prec.resolve("bfloat16", "float32", CPU)


def test_a_bundle_with_an_unknown_precision_is_a_corrupt_bundle(tiny_bundle, tmp_path):
    with pytest.raises(UsageError, match="corrupt bundle .*precision 'int4'"):
        realjudge.load(str(_with_precision(tiny_bundle, tmp_path, "int4")), device="cpu")


def test_bfloat16_scores_stay_close_to_float32(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "native_bfloat16", lambda device: True)  # emulated where absent: same numbers
    det16 = realjudge.load(str(_with_precision(tiny_bundle, tmp_path, "bfloat16")), device="cpu")
    det32 = realjudge.load(str(tiny_bundle), device="cpu")
    assert (det16.precision, det32.precision) == ("bfloat16", "float32")
    assert det16.with_threshold(0.3).precision == "bfloat16"
    views = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    a, b = det16.logits(views), det32.logits(views)
    assert a.dtype == np.float32 and not np.array_equal(a, b)
    assert np.abs(a - b).max() < 0.1 * max(1.0, np.abs(b).max())


def test_calibrate_for_another_precision_records_it_and_refits(tiny_bundle, tiny_flat, tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "native_bfloat16", lambda device: True)
    out = tmp_path / "bf16"
    res = CliRunner().invoke(main, ["calibrate", str(tiny_bundle), "--data", str(tiny_flat), "--precision", "bfloat16",
                                    "--out", str(out), "--scores", str(tmp_path / "val.npz")])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["precision"] == "bfloat16" and json.loads(res.stdout)["precision"] == "bfloat16"
    card = (out / "MODEL_CARD.md").read_text()
    assert "in bfloat16" in card and "Fitted on the logits of the model step in bfloat16" in card
    assert "Fitted on the logits" not in (tiny_bundle / "MODEL_CARD.md").read_text()  # float32 says nothing
    det = realjudge.load(str(out), device="cpu")
    stored = np.load(tmp_path / "val.npz", allow_pickle=False)
    from realjudge.train.scoring import metrics_at

    assert meta["val_metrics"] == json.loads(json.dumps(metrics_at(det.calibration, stored["logits"], stored["labels"])))
    # The stored logits are the bfloat16 step's own.
    assert det.precision == "bfloat16"


def test_detect_takes_a_precision_and_notes_a_fallback(tiny_bundle, tiny_flat, tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "native_bfloat16", lambda device: False)
    bundle = _with_precision(tiny_bundle, tmp_path, "bfloat16")
    imgs = [str(p) for p in sorted((tiny_flat / "real").iterdir())[:2]]
    res = CliRunner().invoke(main, ["detect", *imgs, "--model", str(bundle), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    assert "realjudge: note:" in res.stderr and "calibrated at bfloat16" in res.stderr
    res = CliRunner().invoke(main, ["detect", *imgs, "--model", str(bundle), "--precision", "bfloat16"])
    assert res.exit_code == 2 and "no native bfloat16" in res.output
