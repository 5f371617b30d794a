"""Explanations: API contract, both methods, overlays, CLI and detect --explain, saliency statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import make_images, save

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def detector(tiny_bundle):
    import realjudge

    return realjudge.load(str(tiny_bundle), device="cpu")


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "occlusion"])
def test_explain_contract(detector, method):
    from realjudge.explain import explain

    img = make_images(1, seed=3)[1][0]
    exp = explain(detector, img, method=method)
    assert exp.heatmap.shape == (32, 32) and exp.heatmap.dtype == np.float32
    assert 0.0 <= exp.heatmap.min() and exp.heatmap.max() <= 1.0 and exp.heatmap.max() > 0
    assert exp.overlay.mode == "RGB" and min(exp.overlay.size) >= 256
    assert exp.overlay_png().startswith(PNG_MAGIC)
    assert exp.method == method and exp.record.p_fake is not None and exp.record.verdict in ("real", "fake", "uncertain")
    assert exp.target == ("fake" if exp.record.p_fake >= detector.threshold else "real")


def test_detector_explain_delegates_and_reads_paths(detector, tmp_path):
    path = save(make_images(1, seed=4)[0][0], tmp_path / "x.png")
    exp = detector.explain(str(path), method="gradcam++", target="fake")
    assert exp.record.path == str(path) and exp.target == "fake" and exp.heatmap.shape == (32, 32)


def test_overlay_upscales_blocks_not_blur():
    from realjudge.explain.overlay import render_overlay, upscale_factor

    assert upscale_factor(32, 32) == 8 and upscale_factor(40, 100) == 7 and upscale_factor(600, 800) == 1
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, 16:] = 255
    out = np.asarray(render_overlay(img, np.zeros((32, 32), np.float32), alpha=0.0))
    assert out.shape == (256, 256, 3)
    # nearest-neighbour: the edge stays a hard step, every model pixel is an 8x8 block
    assert set(np.unique(out)) == {0, 255} and (out[:, 127] == 0).all() and (out[:, 128] == 255).all()


def test_unknown_method_is_a_usage_error(detector):
    from realjudge.errors import UsageError

    with pytest.raises(UsageError):
        detector.explain(make_images(1)[0][0], method="lime")


def _planted_model():
    """A cifake-cnn trained on fakes whose only trace is a checkerboard in rows/cols 2..11."""
    from realjudge.models import create_model
    from realjudge.preprocess import InputPolicy

    def data(n, seed):
        reals, _ = make_images(n, seed)
        others, _ = make_images(n, seed + 100)
        checker = ((np.indices((10, 10)).sum(0) % 2) * 2 - 1)[..., None] * 20
        fakes = []
        for r in others:
            f = r.astype(np.int16)
            f[2:12, 2:12] += checker
            fakes.append(np.clip(f, 0, 255).astype(np.uint8))
        return np.stack(reals + fakes), np.r_[np.zeros(n), np.ones(n)]

    torch.manual_seed(0)
    torch.set_num_threads(1)
    policy = InputPolicy()
    model = create_model("cifake-cnn", n_conv=2, filters=8, units=16)
    x, y = data(128, 0)
    xs, ys = policy.normalise(x), torch.tensor(y).float()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(xs), (64,), generator=gen)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = data(16, 7)
    return model, policy.normalise(xt[16:])


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "occlusion"])
def test_map_peaks_on_planted_evidence(method):
    from realjudge.explain.gradcam import class_maps
    from realjudge.explain.saliency import object_share, peak_inside

    model, fakes = _planted_cache()
    assert (model(fakes) > 0).all()
    region = np.zeros((32, 32), bool)
    region[2:12, 2:12] = True
    maps = class_maps(model, fakes, np.ones(len(fakes)), method)
    assert peak_inside(maps, region).mean() >= 0.75
    assert np.nanmean(object_share(maps, region)) > 1.5 * region.mean()


_PLANTED = {}


def _planted_cache():
    if "m" not in _PLANTED:
        _PLANTED["m"] = _planted_model()
    return _PLANTED["m"]


def _images_folder(root, n=3):
    reals, fakes = make_images(n, seed=11)
    save(reals[0], root / "a" / "same.png")
    save(fakes[0], root / "b" / "same.png")  # same file name twice: overlays must not overwrite
    save(fakes[1], root / "c.jpg", "JPEG")
    return root


def test_detect_explain_writes_one_overlay_per_file(tiny_bundle, tmp_path):
    from realjudge.cli import main

    folder = _images_folder(tmp_path / "in")
    res = CliRunner().invoke(main, ["detect", str(folder), "--model", str(tiny_bundle), "--explain", str(tmp_path / "ov"),
                                    "--workers", "0"])
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in (tmp_path / "ov").glob("*.png"))
    assert pngs == ["c.gradcam.png", "same-2.gradcam.png", "same.gradcam.png"]
    assert min(Image.open(tmp_path / "ov" / "c.gradcam.png").size) >= 256


def test_explain_command_both_methods(tiny_bundle, tmp_path):
    from realjudge.cli import main

    folder = _images_folder(tmp_path / "in")
    for method in ("gradcam", "occlusion"):
        res = CliRunner().invoke(main, ["explain", str(folder / "c.jpg"), str(tmp_path / "missing.png"),
                                        "--out", str(tmp_path / "out"), "--model", str(tiny_bundle), "--method", method])
        assert res.exit_code == 1  # one input missing, the other explained
        assert (tmp_path / "out" / f"c.{method}.png").is_file()


# ----------------------------------------------------------------------------- saliency statistics

def test_object_share_and_enrichment_on_synthetic_maps():
    from realjudge.explain.saliency import ellipse_mask, object_share, peak_inside, summarise, verdict_groups

    mask = ellipse_mask(32)
    assert abs(mask.mean() - np.pi * 0.35 ** 2) < 0.01 and mask[16, 16] and not mask[0, 0]
    uniform = np.ones((32, 32))
    centre = mask.astype(float)
    corner = np.zeros((32, 32))
    corner[0, 0] = 1
    maps = np.stack([uniform, centre, corner, np.zeros((32, 32))])
    shares = object_share(maps, mask)
    assert shares[0] == pytest.approx(mask.mean()) and shares[1] == 1.0 and shares[2] == 0.0 and np.isnan(shares[3])
    peaks = peak_inside(maps[:3], mask)
    assert list(peaks) == [False, True, False]  # argmax of a flat map is pixel (0, 0)
    groups = verdict_groups([1, 0, 0, 1], [1, 0, 1, 0])
    assert groups == ["TP", "TN", "FP", "FN"]
    table = summarise(shares, np.full(4, mask.mean()), np.r_[peaks, False], groups)
    assert list(table) == ["all", "TP", "TN", "FP", "FN"]
    assert table["TP"]["enrichment"] == pytest.approx(1.0) and table["TN"]["enrichment"] == pytest.approx(1 / mask.mean())
    assert table["FN"]["n_empty"] == 1 and np.isnan(table["FN"]["object_share"])
    assert table["all"]["object_share"] == pytest.approx(np.mean(shares[:3]))


def test_contrast_mask_finds_a_centred_object():
    from realjudge.explain.saliency import contrast_mask

    img = np.full((32, 32, 3), 40, np.uint8)
    img[10:22, 8:24] = (200, 60, 60)
    mask = contrast_mask(img)
    assert mask[10:22, 8:24].all() and mask.sum() == 12 * 16


def test_one_pass_gives_both_gradient_maps():
    from realjudge.explain.gradcam import class_maps, gradcam_both

    model, fakes = _planted_cache()
    both = gradcam_both(model, fakes, torch.ones(len(fakes)))
    for method in ("gradcam", "gradcam++"):
        np.testing.assert_allclose(both[method], class_maps(model, fakes, np.ones(len(fakes)), method), atol=1e-6)


def test_notes_and_caption_say_what_was_explained(detector):
    from dataclasses import replace

    from realjudge.explain import describe_explained

    img = make_images(1, seed=3, size=96)[1][0]
    exp = detector.explain(img)
    assert not any("centre crop" in n for n in exp.notes) and exp.coverage == 1.0 and exp.crops == []
    assert describe_explained(exp).startswith("the whole image (resized 96x96->32x32")
    plain = np.asarray(detector.explain(img).overlay)
    assert plain.shape[0] == plain.shape[1] + 16  # the caption strip under the image
    # A crop policy: every crop explained and stitched on the full frame, the rest greyed.
    import realjudge

    crops = realjudge.load(detector.info.path, device="cpu")
    crops.policy = replace(crops.policy, kind="crop", crops=4, size=32)
    wide = make_images(1, seed=5, size=200)[0][0]
    exp = crops.explain(wide)
    assert exp.heatmap.shape == (200, 200) and len(exp.crops) == 4
    assert exp.coverage == pytest.approx(4 * 32 * 32 / 200 ** 2)
    assert any("grey: not examined" in n for n in exp.notes)
    assert {(c["x"], c["y"]) for c in exp.crops} == {(84, 84), (0, 0), (168, 0), (0, 168)}
    assert exp.heatmap[100, 100] >= 0 and exp.heatmap[50, 120] == 0  # outside every crop: no evidence
