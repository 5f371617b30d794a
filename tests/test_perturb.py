"""Perturbations: every sweep parses, applies with the uint8 contract and grows stronger level by level;
evaluation applies them to both classes."""

import itertools

import numpy as np
import pytest

from realjudge import perturb


def _textured(h: int = 64, w: int = 48) -> np.ndarray:
    """Edges at several frequencies plus grain: every perturbation has something to remove."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 60 * np.sin(x / 5.0), 128 + 60 * np.cos(y / 7.0), 128 + 40 * np.sin((x + y) / 3.0)], -1)
    img = img + np.random.default_rng(0).normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _back(img: np.ndarray, shape) -> np.ndarray:
    """Resized back to `shape` (bicubic), to compare a rescaled image with its original."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((shape[1], shape[0]), Image.Resampling.BICUBIC), dtype=np.uint8)


def _expected_shape(name: str, value: float, shape) -> tuple[int, int, int]:
    h, w = shape[:2]
    if name in ("downscale", "upscale", "social", "crop"):  # the value is the factor of each side
        return max(1, round(h * value)), max(1, round(w * value)), 3
    return h, w, 3


# How much a level changes the image, larger = stronger: the error against the original for codecs and
# noise, the loss of sharpness for blur and upscaling, the round-trip error for downscaling.
def _damage(name: str, img: np.ndarray, out: np.ndarray) -> float:
    from realjudge.sharpness import mean_abs_laplacian

    if name in ("jpeg", "jpeg_cv2", "webp", "noise"):
        return _mad(out, img)
    if name in ("blur", "upscale"):
        return -mean_abs_laplacian(out)
    if name in ("downscale", "social"):
        return _mad(_back(out, img.shape), img)
    if name == "crop":
        return -out.size  # less of the image is kept
    raise AssertionError(f"no measure of strength for {name}: add one")


@pytest.mark.parametrize("name", sorted(perturb.SWEEPS))
def test_every_sweep_parses_applies_and_grows_stronger(name):
    if name == "jpeg_cv2":
        pytest.importorskip("cv2")
    img = _textured()
    before = img.copy()
    levels = perturb.parse_perturbation(name)  # a bare name is its sweep
    assert [p.name for p in levels] == [name] * len(perturb.SWEEPS[name])
    assert [p.value for p in levels] == [float(v) for v in perturb.SWEEPS[name]] and levels
    damage = {}
    for p in levels:
        # Each level's label is a spec that parses back to that one level.
        (again,) = perturb.parse_perturbation(p.label)
        assert (again.name, again.value) == (p.name, p.value)
        out = p(img)
        assert np.array_equal(img, before)  # the input is never modified in place
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
        assert out.shape == _expected_shape(name, p.value, img.shape), p.label
        assert np.array_equal(out, again(img))  # deterministic (noise is seeded)
        assert out.shape != img.shape or _mad(out, img) > 0, p.label  # every level does something
        damage[p.value] = _damage(name, img, out)
    # Stronger levels change the image more: ordered from the mildest level to the strongest.
    mild_to_strong = sorted(damage, reverse=name in ("jpeg", "jpeg_cv2", "webp", "crop", "downscale"))
    changes = [damage[v] for v in mild_to_strong]
    assert all(a < b for a, b in itertools.pairwise(changes)), dict(zip(mild_to_strong, changes))


def test_levels_compare_with_the_untouched_image():
    from realjudge.sharpness import mean_abs_laplacian

    img = _textured()
    sharp = mean_abs_laplacian(img)
    assert mean_abs_laplacian(perturb.blur(img, 0.5)) < sharp and np.array_equal(perturb.blur(img, 0), img)
    assert _mad(perturb.jpeg(img, 95), img) < _mad(perturb.jpeg(img, 30), img)
    assert mean_abs_laplacian(perturb.upscale(img, 1.5)) < sharp
    # A central crop is exactly the middle of the image, pixel for pixel.
    c = perturb.crop(img, 0.5)
    assert np.array_equal(c, img[16:48, 12:36])
    # Noise of sigma s on a mid-grey image (no clipping) has a standard deviation close to s.
    grey = np.full((64, 64, 3), 128, np.uint8)
    for s in perturb.SWEEPS["noise"]:
        d = perturb.noise(grey, s).astype(np.float64) - 128
        assert abs(d.std() - s) < 0.15 * s + 0.3 and abs(d.mean()) < 0.5
    # social = downscale then JPEG 75, as documented.
    assert np.array_equal(perturb.social(img, 0.5), perturb.jpeg(perturb.downscale(img, 0.5), 75))
    # Upscaling then downscaling comes back close to the original; downscaling does not.
    assert _mad(perturb.downscale(perturb.upscale(img, 2.0), 0.5), img) < _mad(_back(perturb.downscale(img, 0.25), img.shape), img)


def test_specs_that_do_not_parse_are_refused():
    from realjudge.errors import UsageError

    assert [p.label for p in perturb.parse_perturbation("none")] == ["none"]
    assert [p.label for p in perturb.parse_perturbation("hflip")] == ["hflip"]
    with pytest.raises(UsageError, match="unknown perturbation"):
        perturb.parse_perturbation("sharpen:2")
    with pytest.raises(UsageError, match="not a number"):
        perturb.parse_perturbation("jpeg:high")
    # The robustness protocol's families all have a sweep, and every sweep is a known perturbation.
    assert {"jpeg", "jpeg_cv2", "webp", "blur", "downscale", "upscale", "crop", "noise", "social"} <= set(perturb.SWEEPS)
    assert set(perturb.SWEEPS) <= set(perturb.PERTURBATIONS)


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
