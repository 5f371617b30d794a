import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import make_images, save
from realjudge.errors import SourceError
from realjudge.data.cache import load_arrays
from realjudge.data.samples import content_id, is_validation
from realjudge.data.inputs import expand_inputs
from realjudge.data.layouts import open_source


def _jpeg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=75)
    return buf.getvalue()


@pytest.fixture()
def imgs():
    return make_images(3, seed=11)


@pytest.mark.parametrize("layout, real_dir, fake_dir, generator", [
    ("cifake", "train/REAL", "train/FAKE", "sd14"),
    ("forensynths", "progan/0_real", "progan/1_fake", "progan"),
    ("genimage", "midjourney/train/nature", "midjourney/train/ai", "midjourney"),
    ("flat", "Real", "fake", None),
])
def test_layouts_are_detected_and_labelled(tmp_path, imgs, layout, real_dir, fake_dir, generator):
    reals, fakes = imgs
    for i, (r, f) in enumerate(zip(reals, fakes)):
        save(r, tmp_path / real_dir / f"{i}.png")
        save(f, tmp_path / fake_dir / f"{i} (3).png")
    samples = open_source(tmp_path)
    assert sorted(s.label for s in samples) == [0, 0, 0, 1, 1, 1]
    fake = next(s for s in samples if s.label == 1)
    assert fake.generator == generator
    if layout == "cifake":
        assert fake.meta["class"] == 2 and fake.meta["split"] == "train"  # "(3)" is class 2, bird


def test_zip_tar_and_manifest(tmp_path, imgs):
    reals, fakes = imgs
    zpath = tmp_path / "set.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        rows = ["path,label,generator"]
        for i, (r, f) in enumerate(zip(reals, fakes)):
            z.writestr(f"images/r{i}.jpg", _jpeg(r))
            z.writestr(f"images/f{i}.jpg", _jpeg(f))
            rows += [f"images/r{i}.jpg,real,", f"images/f{i}.jpg,fake,sdxl"]
        z.writestr("manifest.csv", "\n".join(rows) + "\n")
    samples = open_source(zpath)
    assert sorted(s.label for s in samples) == [0, 0, 0, 1, 1, 1]
    assert {s.generator for s in samples if s.label == 1} == {"sdxl"}
    assert samples[0].read_bytes()[:2] == b"\xff\xd8"

    tpath = tmp_path / "set.tar.gz"
    with tarfile.open(tpath, "w:gz") as t:
        for i, r in enumerate(reals):
            data = _jpeg(r)
            info = tarfile.TarInfo(f"./train/REAL/{i}.jpg")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(f"./train/FAKE/{i}.jpg")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    samples = open_source(tpath)
    assert len(samples) == 6 and {s.label for s in samples} == {0, 1}


def test_bad_manifest_label(tmp_path, imgs):
    save(imgs[0][0], tmp_path / "a.png")
    (tmp_path / "manifest.csv").write_text("path,label\na.png,maybe\n")
    with pytest.raises(SourceError, match="label must be"):
        open_source(tmp_path)


def test_unknown_layout_and_empty_source_name_the_layouts(tmp_path):
    with pytest.raises(SourceError, match="known layouts"):
        open_source(tmp_path, layout="nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="cifake"):
        open_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="no such"):
        open_source(tmp_path / "missing")


def test_split_follows_bytes_not_names():
    ids = [content_id(bytes([i, j])) for i in range(40) for j in range(40)]
    share = np.mean([is_validation(i, 0.2) for i in ids])
    assert 0.15 < share < 0.25
    assert is_validation(ids[7], 0.2) == is_validation(content_id(bytes([0, 7])), 0.2)


def test_duplicates_land_on_one_side_and_cache_roundtrip(tmp_path, monkeypatch, imgs):
    monkeypatch.setenv("REALJUDGE_CACHE", str(tmp_path / "cache"))
    reals, fakes = imgs
    for i, f in enumerate(fakes):
        save(f, tmp_path / "d" / "fake" / f"f{i}.png")
        save(f, tmp_path / "d" / "fake" / f"copy{i}.png")  # byte-identical duplicate under another name
        save(reals[i], tmp_path / "d" / "real" / f"r{i}.png")
    samples = open_source(tmp_path / "d")
    first = load_arrays(samples, 32, workers=1)
    again = load_arrays(open_source(tmp_path / "d"), 32, workers=1)
    assert first.pixels.shape == (9, 32, 32, 3)
    np.testing.assert_array_equal(first.pixels, again.pixels)
    by_id = {}
    for cid in first.ids:
        by_id.setdefault(cid, []).append(is_validation(cid, 0.5))
    assert all(len(set(v)) == 1 for v in by_id.values())
    assert len(by_id) == 6


def test_expand_inputs_files_folders_globs_archives(tmp_path, imgs):
    save(imgs[0][0], tmp_path / "a" / "x.png")
    save(imgs[0][1], tmp_path / "a" / "sub" / "y.png")
    (tmp_path / "a" / "notes.txt").write_text("not scored")
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.writestr("in/z.jpg", _jpeg(imgs[0][2]))
    samples, missing = expand_inputs([str(tmp_path / "a"), str(tmp_path / "*.zip"), str(tmp_path / "nope.png")])
    names = sorted(s.locator.rsplit("/", 1)[-1] for s in samples)
    assert names == ["x.png", "y.png", "z.jpg"]
    assert missing == [str(tmp_path / "nope.png")]
