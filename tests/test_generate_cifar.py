"""`realjudge generate real`: CIFAR-10 export from an archive built here with the official structure,
read without ever running code from a pickle."""

from __future__ import annotations

import csv
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from realjudge.cli import main
from realjudge.generate.layout import cifake_class, cifake_name

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 `str` (BINSTRING), as the official archive was written by Python 2."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(raw)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def dumps(obj, py2: bool) -> bytes:
    if not py2:
        return pickle.dumps(obj, protocol=2)
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def make_batch(rng: np.random.Generator, n: int, name: str) -> dict:
    labels = [int(v) for v in rng.integers(0, 10, n)]
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {"batch_label": name, "labels": labels, "data": data, "filenames": [f"img_{i}.png" for i in range(n)]}


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """train batches in the Python 2 form of the original; the test batch as Python 3 protocol 2."""
    rng = np.random.default_rng(3)
    batches = {f"data_batch_{i}": make_batch(rng, 12, f"training batch {i} of 5") for i in range(1, 6)}
    batches["test_batch"] = make_batch(rng, 15, "testing batch 1 of 1")
    members = {name: dumps(b, py2=name != "test_batch") for name, b in batches.items()}
    members["batches.meta"] = dumps({"label_names": LABEL_NAMES, "num_cases_per_batch": 12, "num_vis": 3072}, py2=True)
    members["readme.html"] = b"<html></html>"
    root = tmp_path_factory.mktemp("cifar")
    return write_archive(root / "cifar-10-python.tar.gz", members), batches


def expected_images(batches: dict, names: list[str], per_class: int | None) -> dict[str, tuple[int, np.ndarray]]:
    """What the export should write: file name -> (class, 32x32x3 pixels), first N per class in archive order."""
    counts, out = [0] * 10, {}
    for name in names:
        b = batches[name]
        for row, k in zip(b["data"], b["labels"]):
            if per_class is None or counts[k] < per_class:
                out[cifake_name(counts[k], k, "png")] = (k, row.reshape(3, 32, 32).transpose(1, 2, 0))
                counts[k] += 1
    return out


def invoke(*args: str):
    return CliRunner().invoke(main, ["generate", "real", *args], catch_exceptions=False)


def test_export_png_is_pixel_exact_with_cifake_names(cifar, tmp_path):
    archive, batches = cifar
    res = invoke("--cifar10", str(archive), "--out", str(tmp_path), "--per-class", "2", "--format", "png")
    assert res.exit_code == 0, res.output
    expected = expected_images(batches, [f"data_batch_{i}" for i in range(1, 6)], 2)
    files = {p.name: p for p in (tmp_path / "train" / "REAL").iterdir()}
    assert set(files) == set(expected)
    for name, (k, pixels) in expected.items():
        assert cifake_class(name) == k
        assert np.array_equal(np.asarray(Image.open(files[name])), pixels), name
    with open(tmp_path / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(expected)
    assert all(r["label"] == "real" and r["jpeg_quality"] == "" and r["origin"].startswith("cifar-10/data_batch_")
               and r["class"] == LABEL_NAMES[int(r["class_index"])] for r in rows)


def test_export_jpeg_test_split_and_resume(cifar, tmp_path):
    archive, batches = cifar
    assert invoke("--cifar10", str(archive), "--out", str(tmp_path), "--split", "test").exit_code == 0
    folder = tmp_path / "test" / "REAL"
    assert {p.name for p in folder.iterdir()} == {n.replace(".png", ".jpg")
                                                  for n in expected_images(batches, ["test_batch"], None)}
    with Image.open(next(folder.iterdir())) as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (32, 32), "RGB")
    manifest = (tmp_path / "manifest.csv").read_bytes()
    next(folder.iterdir()).unlink()
    res = invoke("--cifar10", str(archive), "--out", str(tmp_path), "--split", "test")
    assert res.exit_code == 0 and "1 images written, 14 already there" in res.output
    assert (tmp_path / "manifest.csv").read_bytes() == manifest


def test_extracted_folder_works_too(cifar, tmp_path):
    archive, _ = cifar
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    res = invoke("--cifar10", str(tmp_path / "x"), "--out", str(tmp_path / "out"), "--per-class", "1")
    assert res.exit_code == 0 and "10 images written" in res.output


class RunsShell:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload, refused", [
    ("os.system", "posix.system"),
    ("eval", "__builtin__.eval"),  # protocol 2 writes the Python 2 module name
    ("object array", "not a plain numeric type"),
])
def test_hostile_pickles_are_refused_without_running_anything(cifar, tmp_path, payload, refused):
    _, batches = cifar
    marker = tmp_path / "pwned"
    if payload == "os.system":
        evil = {"data": RunsShell(str(marker)), "labels": []}
    elif payload == "eval":
        evil = {"data": np.zeros((1, 3072), np.uint8), "labels": EvalCall(f"open({str(marker)!r}, 'w')")}
    else:
        evil = {"data": np.array([None, 1], dtype=object), "labels": [0, 0]}
    members = {"batches.meta": dumps({"label_names": LABEL_NAMES}, py2=True),
               "data_batch_1": pickle.dumps(evil, protocol=2)}
    members |= {f"data_batch_{i}": dumps(batches[f"data_batch_{i}"], py2=True) for i in range(2, 6)}
    archive = write_archive(tmp_path / "evil.tar.gz", members)
    res = subprocess.run([sys.executable, "-m", "realjudge", "generate", "real", "--cifar10", str(archive),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert not marker.exists()
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "data_batch_1 is not a plain CIFAR-10 pickle" in lines[0] and refused in lines[0]
    assert not list((tmp_path / "out").rglob("*.jpg"))


class EvalCall:
    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return eval, (self.source,)


@pytest.mark.parametrize("problem, message", [
    ("labels out of range", "class numbers below 10"),
    ("wrong width", "N x 3072 uint8"),
    ("missing member", "data_batch_3 is missing"),
    ("not a tar", "not a readable tar archive"),
])
def test_malformed_archives_give_clean_errors(cifar, tmp_path, problem, message):
    _, batches = cifar
    members = {"batches.meta": dumps({"label_names": LABEL_NAMES}, py2=True)}
    members |= {f"data_batch_{i}": dumps(batches[f"data_batch_{i}"], py2=True) for i in range(1, 6)}
    if problem == "labels out of range":
        members["data_batch_1"] = dumps(batches["data_batch_1"] | {"labels": [10] * 12}, py2=True)
    elif problem == "wrong width":
        members["data_batch_1"] = dumps(batches["data_batch_1"] | {"data": np.zeros((12, 100), np.uint8)}, py2=True)
    elif problem == "missing member":
        del members["data_batch_3"]
    archive = write_archive(tmp_path / "a.tar.gz", members)
    if problem == "not a tar":
        archive.write_bytes(b"not an archive at all")
    res = invoke("--cifar10", str(archive), "--out", str(tmp_path / "out"))
    assert res.exit_code == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
