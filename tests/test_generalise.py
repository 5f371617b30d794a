"""Generalisation protocols and their helpers: leave-one-family-out with train-only (synthesized)
samples, `split_key` on `sha256:` groups, the `upscale` patch augmentation, and the sharpness
baseline. Every fixture is made here, in tmp folders, from seeded random pixels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from conftest import save
from realjudge.errors import UsageError

FAMILY = {"g1": "A", "g2": "A", "g3": "B"}
FRACTION = 0.3


def noise(rng: np.random.Generator, h: int = 16, w: int = 16) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def sha256_file(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def family_of(s):
    return FAMILY[s.generator]  # a KeyError if it is ever asked about a synthesized sample


def train_only(s) -> bool:
    return "/synth/" in s.locator


# --------------------------------------------------------------------------- leave-one-family-out


@pytest.fixture(scope="module")
def family_files(tmp_path_factory):
    """40 reals; 10 fakes each of g1, g2 (family A) and g3 (family B), the last 3 of each generator
    grouped by an ordinary prompt group; for every real, one synthesized fake and one synthesized
    real copy under synth/, both grouped `sha256:<the real's bytes>`. Returns (root, specs)."""
    root = tmp_path_factory.mktemp("families")
    rng = np.random.default_rng(11)
    specs = []  # (path, label, generator, group)
    reals = []
    for i in range(40):
        img = noise(rng)
        p = save(img, root / "real" / f"r{i}.png")
        reals.append((p, img))
        specs.append((p, 0, None, None))
    for gen in ("g1", "g2", "g3"):
        for i in range(10):
            p = save(noise(rng), root / "fake" / gen / f"{gen}_{i}.png")
            specs.append((p, 1, gen, f"prompt-{i}" if i >= 7 else None))
    for i, (rp, img) in enumerate(reals):
        group = "sha256:" + sha256_file(rp)
        fake = img.copy()
        fake[::2, ::2] = 255 - fake[::2, ::2]
        specs.append((save(fake, root / "synth" / "fake" / f"s{i}.png"), 1, "synth", group))
        copy = img.copy()
        copy[0, 0] ^= 1  # the real's copy, with other bytes
        specs.append((save(copy, root / "synth" / "real" / f"c{i}.png"), 0, None, group))
    return root, specs


def make_samples(specs):
    from realjudge.data.samples import Sample

    return [Sample(locator=str(p), label=lab, generator=gen, group=grp) for p, lab, gen, grp in specs]


def locs(samples) -> set[str]:
    return {s.locator for s in samples}


def test_family_fixture_is_what_it_claims(family_files):
    from realjudge.data.samples import split_key

    _, specs = family_files
    samples = make_samples(specs)
    assert len({sha256_file(p) for p, *_ in specs}) == len(specs)  # distinct bytes everywhere
    by_hash = {sha256_file(s.locator): s for s in samples if s.label == 0 and not train_only(s)}
    synth = [s for s in samples if train_only(s)]
    assert len(synth) == 80 and all(split_key(s) in by_hash for s in synth)


def test_leave_one_family_out(family_files):
    from realjudge.evaluate.protocols import is_test, leave_one_family_out
    from realjudge.data.samples import split_key

    _, specs = family_files
    samples = make_samples(specs)
    protos = leave_one_family_out(samples, family_of, train_only, test_fraction=FRACTION, only_train_only=True)

    fam_protos = [p for p in protos if p.kind == "leave-one-family-out"]
    assert [p.name for p in fam_protos] == ["leave out A", "leave out B"]
    assert [p.meta["held_out"] for p in fam_protos] == ["A", "B"]
    only = [p for p in protos if p.kind == "synthesized-only"]
    assert len(only) == 1 and len(protos) == 3

    public_reals = [s for s in samples if s.label == 0 and not train_only(s)]
    public_fakes = [s for s in samples if s.label == 1 and not train_only(s)]
    synth = [s for s in samples if train_only(s)]
    expected_test_reals = locs(s for s in public_reals if is_test(s, FRACTION))
    # the fixture exercises both sides: some test reals, and some synthesized pairs on each side
    assert 0 < len(expected_test_reals) < len(public_reals)
    assert any(is_test(s, FRACTION) for s in synth) and not all(is_test(s, FRACTION) for s in synth)

    test_real_sets = []
    for p in protos:
        train, test = locs(p.train), locs(p.test)
        assert len(train) == len(p.train) and len(test) == len(p.test)  # nothing listed twice
        assert not train & test
        # train-only samples never tested
        assert not any(train_only(s) for s in p.test)
        # no split key on both sides: no synthesized sample trains while its original real is tested
        test_keys = {split_key(s) for s in p.test}
        assert not any(split_key(s) in test_keys for s in p.train), p.name
        for s in p.train:
            if train_only(s):
                assert not is_test(s, FRACTION)
        reals_in_test = {s.locator for s in p.test if s.label == 0}
        test_real_sets.append(reals_in_test)
        assert not reals_in_test & train

    # the test reals: the same in every protocol, exactly the public reals on the test side
    assert all(t == expected_test_reals for t in test_real_sets)
    # every real of the training side trains everywhere (public reals and the kept real copies)
    train_reals = locs(s for s in samples if s.label == 0 and not is_test(s, FRACTION))
    for p in protos:
        assert {s.locator for s in p.train if s.label == 0} == train_reals

    for p in fam_protos:
        fam = p.meta["held_out"]
        held = [s for s in public_fakes if family_of(s) == fam]
        assert not locs(held) & locs(p.train)
        test_fakes = [s for s in p.test if s.label == 1]
        assert test_fakes and all(family_of(s) == fam for s in test_fakes)
        # every ungrouped fake of the held-out family is tested; grouped ones only from the test side
        assert locs(s for s in held if s.group is None) <= locs(test_fakes)
        assert locs(test_fakes) == locs(s for s in held if s.group is None or is_test(s, FRACTION))
        # the other families train (grouped ones from the training side only), with the kept synthesized
        others = [s for s in public_fakes if family_of(s) != fam]
        assert {s.locator for s in p.train if s.label == 1 and not train_only(s)} == \
            locs(s for s in others if s.group is None or not is_test(s, FRACTION))
        assert locs(s for s in p.train if train_only(s)) == locs(s for s in synth if not is_test(s, FRACTION))

    (o,) = only
    assert o.meta == {"held_out": "all"}
    assert not any(s.label == 1 and not train_only(s) for s in o.train)  # no public fake trains
    assert any(s.label == 1 and train_only(s) for s in o.train)
    assert locs(s for s in public_fakes if s.group is None) <= locs(o.test)
    assert {s.locator for s in o.test if s.label == 1} == \
        locs(s for s in public_fakes if s.group is None or is_test(s, FRACTION))


def test_leave_one_family_out_without_synthesized_only(family_files):
    from realjudge.evaluate.protocols import leave_one_family_out

    _, specs = family_files
    samples = make_samples(specs)
    protos = leave_one_family_out(samples, family_of, train_only, test_fraction=FRACTION, only_train_only=False)
    assert [p.name for p in protos] == ["leave out A", "leave out B"]
    assert all(p.kind == "leave-one-family-out" for p in protos)
    # and nothing to train on alone: no synthesized-only protocol even when asked for
    public = [s for s in make_samples(specs) if not train_only(s)]
    protos = leave_one_family_out(public, family_of, train_only, test_fraction=FRACTION, only_train_only=True)
    assert [p.kind for p in protos] == ["leave-one-family-out"] * 2


def test_leave_one_family_out_skips_unreadable(family_files, tmp_path):
    from realjudge.evaluate.protocols import leave_one_family_out
    from realjudge.data.samples import Sample

    _, specs = family_files
    samples = make_samples(specs) + [Sample(str(tmp_path / "missing.png"), 1, generator="g3")]
    protos = leave_one_family_out(samples, family_of, train_only, test_fraction=FRACTION)
    assert len(protos) == 2
    assert all("missing.png" not in s.locator for p in protos for s in p.train + p.test)


# --------------------------------------------------------------------------- split_key


def test_split_key_sha256_group_follows_that_hash():
    from realjudge.data.samples import Sample, split_key

    hexdigest = hashlib.sha256(b"some photograph").hexdigest()
    assert split_key(Sample("a.png", group="sha256:" + hexdigest)) == hexdigest
    assert split_key(Sample("b.png", group="sha256:" + hexdigest.upper())) == hexdigest


def test_split_key_sha256_group_matches_the_real(tmp_path):
    from realjudge.evaluate.protocols import is_test
    from realjudge.data.samples import Sample, split_key

    rng = np.random.default_rng(3)
    real = Sample(str(save(noise(rng), tmp_path / "r.png")), 0)
    fake = Sample(str(save(noise(rng), tmp_path / "f.png")), 1, group="sha256:" + sha256_file(real.locator))
    assert split_key(real) == real.id == split_key(fake)
    for frac in (0.1, 0.5, 0.9):
        assert is_test(real, frac) == is_test(fake, frac)


def test_split_key_ordinary_and_malformed_groups():
    from realjudge.data.samples import Sample, split_key

    def group_hash(g: str) -> str:
        return hashlib.sha256(f"group:{g}".encode()).hexdigest()

    assert split_key(Sample("a.png", group="prompt-7")) == group_hash("prompt-7")
    assert split_key(Sample("b.png", group="prompt-7")) == split_key(Sample("c.png", group="prompt-7"))
    assert split_key(Sample("a.png", group="prompt-8")) != group_hash("prompt-7")
    for bad in ("sha256:xyz", "sha256:" + "a" * 63, "sha256:" + "a" * 65):
        assert split_key(Sample("a.png", group=bad)) == group_hash(bad)


def test_split_key_non_hex_sha256_group_is_an_ordinary_group():
    from realjudge.data.samples import Sample, is_validation, split_key

    bad = "sha256:" + "z" * 64
    key = split_key(Sample("a.png", group=bad))
    assert key == hashlib.sha256(f"group:{bad}".encode()).hexdigest()
    is_validation(key, 0.1)  # the engine's validation split (no salt) reads the key as hex


# --------------------------------------------------------------------------- upscale patches


def exact_crop(img: np.ndarray, patch: np.ndarray) -> bool:
    """Whether `patch` equals img[y:y+s, x:x+s] at some offset (candidates from the first pixel)."""
    s = patch.shape[0]
    h, w = img.shape[:2]
    ys, xs = np.nonzero((img[: h - s + 1, : w - s + 1] == patch[0, 0]).all(-1))
    return any(np.array_equal(img[y:y + s, x:x + s], patch) for y, x in zip(ys, xs))


def test_random_patches_upscale():
    from realjudge.preprocess import InputPolicy
    from realjudge.train.batches import random_patches

    img = noise(np.random.default_rng(1), 100, 100)
    policy = InputPolicy(kind="crop", size=32, crops=4)

    assert exact_crop(img, img[10:42, 57:89]) and not exact_crop(img, img[10:42, 57:89][::-1])  # the helper

    plain = random_patches(img, policy, 40, [], np.random.default_rng(0))
    assert len(plain) == 40
    assert all(p.shape == (32, 32, 3) and p.dtype == np.uint8 for p in plain)
    assert all(exact_crop(img, p) for p in plain)

    up = random_patches(img, policy, 40, ["upscale"], np.random.default_rng(0))
    assert len(up) == 40
    assert all(p.shape == (32, 32, 3) and p.dtype == np.uint8 and p.flags.c_contiguous for p in up)
    enlarged = [p for p in up if not exact_crop(img, p)]
    assert 1 <= len(enlarged) < 40
    # enlarged patches are interpolated: smoother than the native noise
    from realjudge.sharpness import mean_abs_laplacian

    native = np.mean([mean_abs_laplacian(p) for p in up if exact_crop(img, p)])
    assert max(mean_abs_laplacian(p) for p in enlarged) < native

    again = random_patches(img, policy, 40, ["upscale"], np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(up, again))  # seeded


def test_random_patches_upscale_small_image():
    from realjudge.preprocess import InputPolicy
    from realjudge.train.batches import random_patches

    img = noise(np.random.default_rng(2), 20, 40)  # smaller than a patch: padded first
    out = random_patches(img, InputPolicy(kind="crop", size=32, crops=1), 30, ["upscale", "rescale", "jpeg"],
                         np.random.default_rng(0))
    assert len(out) == 30 and all(p.shape == (32, 32, 3) and p.dtype == np.uint8 for p in out)


def test_train_config_patch_augment():
    from realjudge.train.config import TrainConfig

    cfg = TrainConfig(patch_augment=["rescale", "upscale", "jpeg"])
    assert cfg.patch_augment == ["rescale", "upscale", "jpeg"]
    assert TrainConfig(patch_augment=("upscale",)).patch_augment == ["upscale"]
    with pytest.raises(UsageError) as err:
        TrainConfig(patch_augment=["bogus"])
    assert "bogus" in str(err.value) and "upscale" in str(err.value)
    with pytest.raises(UsageError, match="upscale"):
        TrainConfig.from_json({"patch_augment": ["upscale", "bogus"]})


# --------------------------------------------------------------------------- sharpness baseline


def test_mean_abs_laplacian():
    from realjudge.perturb import blur
    from realjudge.sharpness import mean_abs_laplacian

    assert mean_abs_laplacian(np.full((20, 30, 3), 117, np.uint8)) == 0.0
    assert mean_abs_laplacian(noise(np.random.default_rng(0), 2, 2)) == 0.0  # no interior
    spot = np.zeros((3, 3, 3), np.uint8)
    spot[1, 1] = 10
    assert mean_abs_laplacian(spot) == pytest.approx(40.0, rel=1e-5)  # one interior pixel: 4 * 10
    img = noise(np.random.default_rng(4), 64, 64)
    assert mean_abs_laplacian(img) > 2 * mean_abs_laplacian(blur(img, 1.5))


def test_sharpness_fake_scores(tmp_path):
    from realjudge.perturb import blur, parse_perturbation
    from realjudge.sharpness import mean_abs_laplacian, sharpness_fake_scores
    from realjudge.data.samples import Sample

    img = noise(np.random.default_rng(5), 64, 64)
    soft = blur(img, 1.5)
    (tmp_path / "garbage.png").write_bytes(b"this is not an image at all\n" * 10)
    samples = [Sample(str(save(img, tmp_path / "sharp.png")), 0),
               Sample(str(tmp_path / "garbage.png"), 1),
               Sample(str(save(soft, tmp_path / "soft.png")), 1)]

    scores, labels = sharpness_fake_scores(samples)
    assert len(scores) == 2 and list(labels) == [0, 1]
    assert scores[1] > scores[0]  # the blurred one looks more fake
    assert scores[0] == pytest.approx(-mean_abs_laplacian(img))
    assert scores[1] == pytest.approx(-mean_abs_laplacian(soft))

    (down,) = parse_perturbation("downscale:0.5")
    pscores, plabels = sharpness_fake_scores(samples, down)
    assert len(pscores) == 2 and list(plabels) == [0, 1]
    assert pscores[0] == pytest.approx(-mean_abs_laplacian(down(img)))
    assert not np.allclose(pscores, scores)  # the perturbation was applied

    def broken(_px):
        raise ValueError("cannot perturb")

    escores, elabels = sharpness_fake_scores(samples, broken)
    assert len(escores) == 0 and len(elabels) == 0
