"""Perturbations: the issue's sweeps exist, shapes and types hold, and evaluation applies them to both classes."""

import numpy as np
import pytest

from realjudge import perturb


def test_sweeps_cover_the_robustness_protocol():
    s = perturb.SWEEPS
    assert max(s["jpeg"]) == 95 and min(s["jpeg"]) == 30 and "jpeg_cv2" in s and "webp" in s
    assert min(s["blur"]) == 0.5 and max(s["blur"]) == 3.0
    assert s["downscale"] == [0.75, 0.5, 0.25] and "upscale" in s and "crop" in s and "noise" in s and "social" in s


@pytest.mark.parametrize("spec", ["jpeg:30", "jpeg_cv2:50", "webp:75", "blur:2", "downscale:0.5", "upscale:1.5",
                                  "crop:0.5", "noise:5", "social"])
def test_each_perturbation_returns_uint8_rgb(spec):
    img = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    for p in perturb.parse_perturbation(spec):
        out = p(img)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    if spec.startswith("downscale"):
        assert out.shape[:2] == (20, 24)


def test_evaluation_perturbs_reals_and_fakes_alike(tiny_bundle, tiny_flat, monkeypatch):
    from realjudge.detector import load
    from realjudge.evaluate import run
    from realjudge.data.layouts import open_source

    seen = []
    orig = perturb.jpeg

    def spy(pixels, q=75):
        seen.append(1)
        return orig(pixels, q)

    samples = open_source(str(tiny_flat))
    p = perturb.Perturbation("jpeg", 75, spy)
    res, _, _ = run.evaluate(load(str(tiny_bundle), "cpu"), samples, [p])
    assert len(seen) == len(samples)  # every image, whatever its label
    assert res["perturbations"]["jpeg:75"]["n_real"] == res["perturbations"]["jpeg:75"]["n_fake"] == 48
