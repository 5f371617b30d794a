"""Fakes synthesized from real photographs: decoders, tiling, fitting, sharpness matching, the
`data synthesize` and `data train-decoders` commands, leave-one-family-out with train-only
samples, and the `upscale` patch augmentation. Every fixture is made here, in tmp folders."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import make_images
from realjudge.errors import UsageError


def invoke(*args):
    from realjudge.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def sha256_file(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def decode(path) -> np.ndarray:
    from realjudge.data.decode import decode_bytes

    return decode_bytes(Path(path).read_bytes(), str(path)).pixels


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A 'photograph': low-frequency colour gradients plus mild noise."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(x * rng.uniform(2, 6) + rng.uniform(0, 6)), np.cos(y * rng.uniform(2, 6)),
                     np.sin((x + y) * rng.uniform(1, 4))], -1)
    return np.clip(127 + 100 * base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- decoders


@pytest.mark.parametrize("kwargs", [{"upsample": "bicubic"}, {"upsample": "nearest", "factor": 3},
                                    {"upsample": "nearest", "factor": 16}, {"upsample": "nearest", "latent": 0},
                                    {"upsample": "nearest", "latent": 65}])
def test_decoder_spec_rejects_bad_values(kwargs):
    from realjudge.synthesize.decoders import DecoderSpec

    with pytest.raises(UsageError):
        DecoderSpec(**kwargs)


def test_decoder_spec_name():
    from realjudge.synthesize.decoders import DecoderSpec

    assert DecoderSpec("transposed", 8, 16).name == "ae-transposed-f8c16"


@pytest.mark.parametrize("factor", [4, 8])
def test_autoencoder_keeps_the_shape_for_every_upsampler(factor):
    from realjudge.synthesize.decoders import UPSAMPLERS, AutoEncoder, DecoderSpec

    assert set(UPSAMPLERS) == {"nearest", "transposed", "shuffle", "bilinear"}
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for up in UPSAMPLERS:
        model = AutoEncoder(DecoderSpec(up, factor, 4)).eval()
        with torch.no_grad():
            z = model.encoder(x)
            y = model(x)
        assert z.shape == (1, 4, 32 // factor, 32 // factor), up
        assert y.shape == x.shape and y.dtype == torch.float32, up
        assert torch.isfinite(y).all(), up


def test_save_load_decoder_round_trip(tmp_path):
    from safetensors import safe_open

    from realjudge.synthesize.decoders import AutoEncoder, DecoderSpec, load_decoder, save_decoder

    torch.manual_seed(1)
    model = AutoEncoder(DecoderSpec("shuffle", 4, 4)).eval()
    folder = save_decoder(model, tmp_path / "dec", {"validation": {"psnr_db": 12.5}})
    assert folder == tmp_path / "dec"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert keys and all(f.get_tensor(k).dtype == torch.float16 for k in keys)
    assert set(keys) == set(model.state_dict())

    loaded, meta = load_decoder(folder)
    assert meta["name"] == "ae-shuffle-f4c4" and meta["format_version"] == 1
    assert meta["spec"] == asdict(model.spec) and meta["validation"] == {"psnr_db": 12.5}
    assert loaded.spec == model.spec and not loaded.training
    ref = model.state_dict()
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32, k
        assert torch.equal(v, ref[k].half().float()), k
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.allclose(a, b, atol=2e-2, rtol=0), float((a - b).abs().max())


def test_load_decoder_bad_folders(tmp_path):
    from realjudge.synthesize.decoders import AutoEncoder, DecoderSpec, load_decoder, save_decoder

    model = AutoEncoder(DecoderSpec("nearest", 4, 4))
    corrupt = save_decoder(model, tmp_path / "corrupt", {})
    (corrupt / "decoder.json").write_text("{ this is not json")
    with pytest.raises(UsageError) as err:
        load_decoder(corrupt)
    assert str(corrupt) in str(err.value) and "corrupt decoder" in str(err.value)

    mismatched = save_decoder(model, tmp_path / "mismatched", {})
    meta = json.loads((mismatched / "decoder.json").read_text())
    meta["spec"]["factor"] = 8  # weights of a 4x decoder under an 8x spec
    (mismatched / "decoder.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError) as err:
        load_decoder(mismatched)
    assert str(mismatched) in str(err.value)

    no_weights = save_decoder(model, tmp_path / "no-weights", {})
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(UsageError) as err:
        load_decoder(no_weights)
    assert str(no_weights) in str(err.value) and "not a decoder folder" in str(err.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a decoder folder"):
        load_decoder(tmp_path / "empty")


def test_load_decoder_corrupt_weights_is_a_usage_error(tmp_path):
    from realjudge.synthesize.decoders import AutoEncoder, DecoderSpec, load_decoder, save_decoder

    folder = save_decoder(AutoEncoder(DecoderSpec("nearest", 4, 4)), tmp_path / "dec", {})
    (folder / "model.safetensors").write_bytes(b"garbage, not safetensors" * 4)
    with pytest.raises(UsageError) as err:
        load_decoder(folder)
    assert str(folder) in str(err.value)


# --------------------------------------------------------------------------- tiling


def test_tiled_identity_returns_the_input_exactly():
    from realjudge.synthesize.reconstruct import tiled

    torch.manual_seed(0)
    x = torch.rand(1, 3, 300, 700) * 2 - 1
    shapes = []

    def identity(piece):
        shapes.append(tuple(piece.shape[-2:]))
        return piece.clone()

    y = tiled(identity, x, factor=8, tile=128, margin=32)
    assert torch.equal(y, x)
    assert len(shapes) == 3 * 6  # ceil(300 / 128) rows x ceil(700 / 128) columns
    assert all(h % 8 == 0 and w % 8 == 0 for h, w in shapes), shapes  # each piece padded to a multiple of 8
    assert max(h for h, _ in shapes) <= 128 + 2 * 32 and max(w for _, w in shapes) <= 128 + 2 * 32


def test_tiled_conv_matches_untiled_when_the_margin_covers_the_receptive_field():
    from realjudge.synthesize.reconstruct import tiled

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(4, 3, 3, padding=1))
    with torch.no_grad():
        # Sizes that are multiples of the factor: no piece is padded, so the whole image must match.
        x = torch.randn(1, 3, 256, 384)
        ref = conv(x)
        assert torch.allclose(tiled(conv, x, 8, tile=64, margin=16), ref, atol=1e-5)
        # Negative control: without a margin the tile seams differ.
        assert not torch.allclose(tiled(conv, x, 8, tile=64, margin=0), ref, atol=1e-3)

        # Odd sizes, factor 1 (nothing padded), a two-layer net (receptive radius 2), margin 4.
        x = torch.randn(1, 3, 300, 700)
        assert torch.allclose(tiled(net, x, 1, tile=128, margin=4), net(x), atol=1e-5)

        # Odd sizes, factor 8: pieces at the bottom / right image edge are padded there (reflect instead of the
        # conv's zeros), which changes only the last row / column; everything else equals the untiled output.
        y = tiled(conv, x, 8, tile=128, margin=16)
        ref = conv(x)
        assert torch.allclose(y[..., :-1, :-1], ref[..., :-1, :-1], atol=1e-5)


# --------------------------------------------------------------------------- fitting


def test_fit_decoder_reports_validation_quality():
    from realjudge.synthesize.decoders import AutoEncoder, DecoderSpec
    from realjudge.synthesize.fit import fit_decoder

    reals, fakes = make_images(36, seed=2, size=32)
    patches = np.stack(reals + fakes)
    assert patches.dtype == np.uint8 and patches.shape == (72, 32, 32, 3)
    logged = []
    model, info = fit_decoder(DecoderSpec("nearest", 4, 4), patches[:64], patches[64:], steps=3, batch=8, log=logged.append)
    assert isinstance(model, AutoEncoder) and not model.training
    v = info["validation"]
    assert v["psnr_db"] > 0 and v["sharpness_ratio"] > 0 and v["n_patches"] == 8
    t = info["training"]
    assert (t["steps"], t["batch"], t["patch"], t["n_train_patches"]) == (3, 8, 32, 64)
    assert len(logged) == 3 and all("ae-nearest-f4c4: step" in m for m in logged)


def test_laplacian():
    from realjudge.synthesize.fit import laplacian

    const = torch.full((2, 3, 10, 12), 0.7)
    lap = laplacian(const)
    assert lap.shape == (2, 3, 8, 10) and torch.count_nonzero(lap) == 0
    ramp = torch.arange(12.0).view(1, 1, 1, 12).expand(1, 3, 10, 12)
    assert torch.allclose(laplacian(ramp), torch.zeros(1, 3, 8, 10))  # linear: no curvature
    checker = (torch.arange(12).view(1, -1) + torch.arange(10).view(-1, 1)) % 2
    assert laplacian(checker.float().expand(1, 3, 10, 12)).abs().min() == 4


# --------------------------------------------------------------------------- pairs helpers


def test_match_blur_reaches_the_target_sharpness():
    from realjudge.sharpness import mean_abs_laplacian
    from realjudge.synthesize.pairs import match_blur

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    own = mean_abs_laplacian(img)
    target = own / 2
    res = match_blur(img, target)
    assert res is not None
    blurred, sigma = res
    assert blurred.shape == img.shape and blurred.dtype == np.uint8
    assert 0 < sigma <= 8
    assert abs(mean_abs_laplacian(blurred) - target) <= 0.1 * target
    assert match_blur(img, own * 1.5) is None
    assert match_blur(img, own) is None  # already no sharper than the target


@pytest.mark.parametrize("spec, expected", [("png", ("png", None)), ("jpeg:90", ("jpeg", 90)), ("jpeg:1", ("jpeg", 1)),
                                            ("jpeg:100", ("jpeg", 100))])
def test_parse_encode_accepts(spec, expected):
    from realjudge.synthesize.pairs import parse_encode

    assert parse_encode(spec) == expected


@pytest.mark.parametrize("spec", ["jpeg:0", "jpeg", "gif", "jpeg:101", "png:5", "jpeg:abc", ""])
def test_parse_encode_rejects(spec):
    from realjudge.synthesize.pairs import parse_encode

    with pytest.raises(UsageError, match="--encode"):
        parse_encode(spec)


# --------------------------------------------------------------------------- `realjudge data synthesize`


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A 96x80 PNG, a 53x37 JPEG (not a multiple of 8) and a garbage broken.jpg."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    Image.fromarray(smooth_image(rng, 80, 96)).save(root / "wide.png")
    Image.fromarray(smooth_image(rng, 37, 53)).save(root / "small.jpg", "JPEG", quality=92)
    (root / "broken.jpg").write_bytes(b"this is not an image at all\x00\x01\x02" * 8)
    return root


@pytest.fixture(scope="module")
def originals(photos):
    """sha256 of the good photographs' bytes -> (path, decoded pixels)."""
    return {sha256_file(p): (p, decode(p)) for p in (photos / "wide.png", photos / "small.jpg")}


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    from realjudge.synthesize.decoders import AutoEncoder, DecoderSpec, save_decoder

    root = tmp_path_factory.mktemp("decoders")
    out = []
    for i, spec in enumerate([DecoderSpec("nearest", 4, 4), DecoderSpec("transposed", 8, 4)]):
        torch.manual_seed(10 + i)
        out.append(save_decoder(AutoEncoder(spec), root / spec.name, {}))
    return out


NAMES = ["ae-nearest-f4c4", "ae-transposed-f8c4"]


def synthesize(photos, decoders, out, *extra):
    args = ["data", "synthesize", photos]
    for d in decoders:
        args += ["--decoder", d]
    return invoke(*args, "--out", out, *extra)


def manifest(out) -> list[dict]:
    with open(Path(out) / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_skipped_broken(res):
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.jpg" in lines[0] and lines[0].startswith("realjudge: skipped"), res.stderr
    assert "Traceback" not in res.output


def is_matched(row) -> bool:
    return row["label"] == "real" and "sharpness matched" in row["preprocess"]


def test_synthesize_writes_grouped_pairs(photos, originals, decoders, tmp_path):
    from realjudge.sharpness import mean_abs_laplacian
    from realjudge.data.layouts import open_source
    from realjudge.data.samples import split_key
    from realjudge.synthesize.reconstruct import DecoderReconstructor

    out = tmp_path / "out"
    res = synthesize(photos, decoders, out)
    check_skipped_broken(res)
    assert "2 photographs, 4 reconstructions" in res.stdout
    rows = manifest(out)
    by_group: dict[str, list[dict]] = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(r)
    assert set(by_group) == {f"sha256:{h}" for h in originals}
    recon = {name: DecoderReconstructor(d) for name, d in zip(NAMES, decoders)}
    n_matched = 0
    for group, members in by_group.items():
        path, px = originals[group.removeprefix("sha256:")]
        h, w = px.shape[:2]
        untouched = [r for r in members if r["label"] == "real" and not is_matched(r)]
        fakes = [r for r in members if r["label"] == "fake"]
        matched = [r for r in members if is_matched(r)]
        assert len(untouched) == 1 and sorted(r["generator"] for r in fakes) == NAMES
        assert len(matched) <= len(NAMES) and len(members) == 1 + len(NAMES) + len(matched)
        n_matched += len(matched)
        assert len({r["pair"] for r in members}) == 1
        assert np.array_equal(decode(out / untouched[0]["path"]), px)  # the photograph, untouched
        for r in members:
            f = out / r["path"]
            assert Image.open(f).size == (w, h) and (int(r["width"]), int(r["height"])) == (w, h)
            assert r["sha256"] == sha256_file(f) and int(r["bytes"]) == f.stat().st_size
            assert r["source"] == str(path) and r["format"] == "PNG" and f.suffix == ".png"
        for r in fakes:
            fake = decode(out / r["path"])
            assert np.array_equal(fake, recon[r["generator"]](px))  # exactly that decoder's reconstruction
            assert not np.array_equal(fake, px)
        for r in matched:
            assert r["generator"] == "real" and any(n in r["preprocess"] for n in NAMES)
            assert mean_abs_laplacian(decode(out / r["path"])) < mean_abs_laplacian(px)
    assert n_matched > 0  # untrained decoders are far softer than the photographs

    # Read back: labelled, and every pair member splits with its original photograph.
    samples = open_source(str(out))
    assert len(samples) == len(rows) and {s.label for s in samples} == {0, 1}
    assert sum(s.label == 1 for s in samples) == 2 * len(NAMES)
    assert {s.generator for s in samples if s.label == 1} == set(NAMES)
    ungrouped = {split_key(s) for s in open_source(str(photos)) if s.group is None and s.id in originals}
    assert ungrouped == set(originals)
    for s in samples:
        assert split_key(s) == s.group.removeprefix("sha256:")
        assert split_key(s) in ungrouped and split_key(s) != s.id


def test_synthesize_per_real_rotates_decoders(photos, originals, decoders, tmp_path):
    out = tmp_path / "out"
    check_skipped_broken(synthesize(photos, decoders, out, "--per-real", "1"))
    fakes = [r for r in manifest(out) if r["label"] == "fake"]
    assert len(fakes) == 2 and len({r["group"] for r in fakes}) == 2
    assert sorted(r["generator"] for r in fakes) == NAMES

    res = synthesize(photos, decoders, tmp_path / "too-many", "--per-real", "3")
    assert res.exit_code == 2 and "--per-real" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_synthesize_without_sharpness_matching(photos, originals, decoders, tmp_path):
    out = tmp_path / "out"
    res = synthesize(photos, decoders, out, "--no-match-sharpness")
    check_skipped_broken(res)
    rows = manifest(out)
    assert not any(is_matched(r) or "blur" in r["preprocess"] for r in rows)
    assert len(rows) == 2 * (1 + len(NAMES)) and sum(r["label"] == "real" for r in rows) == 2
    assert "0 sharpness-matched" in res.stdout


def test_synthesize_jpeg_encoding(photos, originals, decoders, tmp_path):
    out = tmp_path / "out"
    check_skipped_broken(synthesize(photos, decoders, out, "--encode", "jpeg:90"))
    rows = manifest(out)
    assert {r["label"] for r in rows} == {"real", "fake"}
    for r in rows:
        f = out / r["path"]
        assert f.suffix == ".jpg" and r["format"] == "JPEG" and "jpeg q90" in r["preprocess"]
        assert Image.open(f).format == "JPEG"


def test_synthesize_bad_encode_is_one_line(photos, decoders, tmp_path):
    out = tmp_path / "out"
    res = synthesize(photos, decoders, out, "--encode", "bogus")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--encode" in lines[0] and "bogus" in lines[0] and "Traceback" not in res.output
    assert not out.exists()


def test_synthesize_crop(photos, originals, decoders, tmp_path):
    out = tmp_path / "out"
    check_skipped_broken(synthesize(photos, decoders, out, "--crop", "40"))
    rows = manifest(out)
    assert len({r["group"] for r in rows}) == 2
    for r in rows:
        w, h = Image.open(out / r["path"]).size
        assert w <= 40 and h <= 40 and (int(r["width"]), int(r["height"])) == (w, h)
        assert "centre crop" in r["preprocess"]
    wide = next(h for h, (p, _) in originals.items() if p.name == "wide.png")
    [real] = [r for r in rows if r["group"] == f"sha256:{wide}" and r["label"] == "real" and not is_matched(r)]
    px = originals[wide][1]  # 80 x 96: the centre 40 x 40 starts at (20, 28)
    assert np.array_equal(decode(out / real["path"]), px[20:60, 28:68])
    small = next(h for h in originals if h != wide)
    assert {(int(r["width"]), int(r["height"])) for r in rows if r["group"] == f"sha256:{small}"} == {(40, 37)}


def test_synthesize_with_a_diffusers_vae(photos, originals, tmp_path):
    diffusers = pytest.importorskip("diffusers")

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3,
                                  down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                                  up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16),
                                  layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=32)
    vae.save_pretrained(str(tmp_path / "vae"))
    out = tmp_path / "out"
    res = invoke("data", "synthesize", photos, "--vae", tmp_path / "vae", "--out", out)
    check_skipped_broken(res)
    rows = manifest(out)
    fakes = [r for r in rows if r["label"] == "fake"]
    assert len(fakes) == 2 and {r["generator"] for r in fakes} == {"vae-vae"}  # no shipped decoder joined in
    for r in fakes:
        real = next(x for x in rows if x["group"] == r["group"] and x["label"] == "real" and not is_matched(x))
        assert Image.open(out / r["path"]).size == Image.open(out / real["path"]).size
        px = originals[r["group"].removeprefix("sha256:")][1]
        assert Image.open(out / r["path"]).size == (px.shape[1], px.shape[0])

    (tmp_path / "not-a-vae").mkdir()
    res = invoke("data", "synthesize", photos, "--vae", tmp_path / "not-a-vae", "--out", tmp_path / "out2")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "not-a-vae") in lines[0] and "config.json" in lines[0], res.stderr
    assert "Traceback" not in res.output


# --------------------------------------------------------------------------- `realjudge data train-decoders`


def _random_pngs(root: Path, n_val: int, n_train: int, fraction: float = 0.1) -> None:
    """Random 64x64 PNGs, chosen so that `n_val` fall on the validation side of `is_validation`."""
    from realjudge.data.samples import is_validation

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    val = train = 0
    for i in range(1000):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        blob = buf.getvalue()
        if is_validation(hashlib.sha256(blob).hexdigest(), fraction):
            if val == n_val:
                continue
            val += 1
        else:
            if train == n_train:
                continue
            train += 1
        (root / f"img{i}.png").write_bytes(blob)
        if val == n_val and train == n_train:
            return
    raise AssertionError("could not draw the images")


def test_train_decoders_command(tmp_path):
    from realjudge.synthesize.decoders import load_decoder

    _random_pngs(tmp_path / "reals", n_val=1, n_train=3)
    assert len(list((tmp_path / "reals").iterdir())) == 4
    out = tmp_path / "decoders"
    res = invoke("data", "train-decoders", tmp_path / "reals", "--out", out, "--spec", "nearest-f4-c4", "--steps", "2")
    assert res.exit_code == 0, res.output
    folder = out / "ae-nearest-f4c4"
    assert (folder / "decoder.json").is_file() and (folder / "model.safetensors").is_file()
    assert [p.name for p in out.iterdir()] == ["ae-nearest-f4c4"]
    assert "ae-nearest-f4c4: PSNR" in res.stdout
    model, meta = load_decoder(folder)
    assert meta["spec"] == {"upsample": "nearest", "factor": 4, "latent": 4, "width": 16}
    assert meta["training"]["steps"] == 2 and meta["training"]["n_real_images"] == 3
    assert meta["validation"]["psnr_db"] > 0 and meta["validation"]["n_patches"] > 0


@pytest.mark.parametrize("spec", ["bad", "nearest-f4", "nearest-fx-c4", "nearest-f3-c4", "bogus-f4-c4"])
def test_train_decoders_bad_spec_exits_2(tmp_path, spec):
    (tmp_path / "reals").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "reals" / "a.png")
    res = invoke("data", "train-decoders", tmp_path / "reals", "--out", tmp_path / "out", "--spec", spec, "--steps", "1")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("realjudge: error:") and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_train_decoders_holds_one_photograph_out_when_the_hash_picks_none(tmp_path):
    _random_pngs(tmp_path / "reals", n_val=0, n_train=3)
    out = tmp_path / "out"
    res = invoke("data", "train-decoders", tmp_path / "reals", "--out", out, "--spec", "nearest-f4-c4", "--steps", "1")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "ae-nearest-f4c4" / "decoder.json").read_text())
    assert meta["training"]["n_real_images"] == 2 and meta["validation"]["n_patches"] > 0


def test_train_decoders_with_one_photograph_is_a_usage_error(tmp_path):
    _random_pngs(tmp_path / "reals", n_val=0, n_train=1)
    res = invoke("data", "train-decoders", tmp_path / "reals", "--out", tmp_path / "out", "--spec", "nearest-f4-c4",
                 "--steps", "1")
    assert res.exit_code == 2 and "too few real photographs" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
