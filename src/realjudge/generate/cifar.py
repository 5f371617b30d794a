"""Real images for CIFAKE-style sets: CIFAR-10 from a local copy of the official python archive.

The archive (`cifar-10-python.tar.gz`, or its extracted `cifar-10-batches-py/` folder) holds
`data_batch_1..5`, `test_batch` and `batches.meta`, each a Python 2 pickle. Plain `pickle.load`
would run whatever a tampered file asks for (a pickle can call any importable function), so
batches are read with `SafeUnpickler`: it resolves only the handful of names that a numpy array
needs to be rebuilt, each mapped to a checked stand-in, and refuses everything else. The result is
then checked against the exact structure of a CIFAR-10 batch before use.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
from PIL import Image

from ..errors import UsageError
from .layout import check_output, cifake_name, image_dir, present, remove_partial_files, save_image
from .manifest import Manifest

FOLDER = "cifar-10-batches-py"
SPLIT_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
MAX_MEMBER_BYTES = 256 << 20  # an official batch is about 31 MB; a larger member is not CIFAR-10
IMAGE_BYTES = 32 * 32 * 3


class _NdarrayType:
    """Stands for `numpy.ndarray` inside a pickle: usable only as the first argument of
    `_reconstruct`, never callable, so a pickle cannot build arrays of its own choosing."""


def _text(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _reconstruct(subtype, shape, typecode) -> np.ndarray:
    """numpy's `_reconstruct(ndarray, (0,), b'b')`: an empty array, filled afterwards by `__setstate__`
    from raw bytes. The requested shape is ignored so that no large allocation happens here."""
    if subtype is not _NdarrayType:
        raise pickle.UnpicklingError("_reconstruct of something other than numpy.ndarray")
    return np.ndarray((0,), _plain_dtype(typecode))


def _plain_dtype(obj, align=False, copy=False) -> np.dtype:
    """`numpy.dtype(...)` for plain numbers only: an object dtype would let array contents be
    arbitrary Python objects."""
    dtype = np.dtype(_text(obj))
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise pickle.UnpicklingError(f"dtype {dtype} is not a plain numeric type")
    return dtype


def _latin1(text: str, encoding: str) -> bytes:
    """`_codecs.encode(str, 'latin1')`: how Python 3 writes bytes in protocol-2 pickles. The official
    archive (Python 2) does not need it; copies re-pickled by Python 3 do."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 text")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """Resolves only these names. numpy pickles name `numpy.core.multiarray` (numpy 1, and the
    Python 2 original) or `numpy._core.multiarray` (numpy 2)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _NdarrayType,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): _latin1,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent reference")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


def safe_load(data: bytes, what: str) -> object:
    try:
        # encoding="bytes": Python 2 `str` values stay bytes, as the official archive needs for its arrays.
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise UsageError(f"{what} is not a plain CIFAR-10 pickle: {_one_line(err)}; "
                         "a data file never needs that, so it was not run") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, UnicodeDecodeError,
            MemoryError, OverflowError) as err:
        raise UsageError(f"{what} is not a readable CIFAR-10 pickle ({type(err).__name__}: {_one_line(err)})") from None


def _get(d: dict, key: str):
    """Keys are bytes in the Python 2 original, str in copies re-pickled by Python 3."""
    return d[key.encode()] if key.encode() in d else d.get(key)


@dataclass
class Batch:
    name: str
    images: np.ndarray  # N x 32 x 32 x 3 uint8
    labels: list[int] = field(default_factory=list)


def parse_batch(obj: object, what: str, n_classes: int) -> Batch:
    if not isinstance(obj, dict):
        raise UsageError(f"{what}: expected a dict, found {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise UsageError(f"{what}: 'data' is not an N x 3072 uint8 array")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(
            type(v) is int and 0 <= v < n_classes for v in labels):
        raise UsageError(f"{what}: 'labels' is not a list of {len(data)} class numbers below {n_classes}")
    # Rows are 1024 red, 1024 green, 1024 blue values, each a 32 x 32 plane in row-major order.
    return Batch(PurePosixPath(what).name, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels)


def parse_meta(obj: object, what: str) -> list[str]:
    names = _get(obj, "label_names") if isinstance(obj, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise UsageError(f"{what}: no 'label_names' list")
    return [_text(n) for n in names]


class Cifar10Archive:
    """Reads members of the official archive (tar.gz) or of its extracted folder, never extracting."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            self._tar = None
            self._dir = self.path if self.path.name == FOLDER else self.path / FOLDER
            if not (self._dir / "batches.meta").is_file():
                raise UsageError(f"--cifar10 {path}: no {FOLDER}/batches.meta in this folder")
        elif self.path.is_file():
            try:
                self._tar = tarfile.open(self.path, "r:*")
            except (tarfile.TarError, OSError) as err:
                raise UsageError(f"--cifar10 {path}: not a readable tar archive ({type(err).__name__}); "
                                 "expected the official cifar-10-python.tar.gz") from None
            self._members = {PurePosixPath(m.name).as_posix().lstrip("./"): m for m in self._tar.getmembers()}
        else:
            raise UsageError(f"--cifar10 {path}: no such file")

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def read(self, name: str) -> bytes:
        where = f"{self.path}: {FOLDER}/{name}"
        if self._tar is None:
            p = self._dir / name
            if not p.is_file():
                raise UsageError(f"{where} is missing")
            if p.stat().st_size > MAX_MEMBER_BYTES:
                raise UsageError(f"{where} is too large for a CIFAR-10 batch")
            return p.read_bytes()
        member = self._members.get(f"{FOLDER}/{name}")
        if member is None or not member.isfile():
            raise UsageError(f"{where} is missing (expected the official cifar-10-python.tar.gz layout)")
        if member.size > MAX_MEMBER_BYTES:
            raise UsageError(f"{where} is too large for a CIFAR-10 batch")
        try:
            return self._tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise UsageError(f"{where}: cannot read ({_one_line(err)})") from None

    def label_names(self) -> list[str]:
        return parse_meta(safe_load(self.read("batches.meta"), f"{self.path}: batches.meta"), "batches.meta")

    def batches(self, split: str, n_classes: int) -> Iterator[Batch]:
        for name in SPLIT_BATCHES[split]:
            what = f"{self.path}: {FOLDER}/{name}"
            yield parse_batch(safe_load(self.read(name), what), what, n_classes)


@dataclass
class RealSummary:
    folder: Path
    manifest: Path
    written: int = 0
    kept: int = 0
    per_class: dict[str, int] = field(default_factory=dict)


def export_cifar10(archive: str | Path, out: str | Path, split: str = "train", per_class: int | None = None,
                   fmt: str = "jpeg", jpeg_quality: int = 75) -> RealSummary:
    """Write CIFAR-10 images as `OUT/<split>/REAL/` with CIFAKE names, in archive order: the first
    `per_class` images of each class (all when None). Existing files are kept; rerunning is safe."""
    check_output(fmt, jpeg_quality)
    if per_class is not None and per_class < 1:
        raise UsageError(f"--per-class must be at least 1, got {per_class}")
    out = Path(out)
    folder = image_dir(out, split, "REAL")
    source = Cifar10Archive(archive)
    summary = RealSummary(folder, out / "manifest.csv")
    try:
        classes = source.label_names()
        counts = [0] * len(classes)
        with Manifest(out) as manifest:
            remove_partial_files(folder)
            for batch in source.batches(split, len(classes)):
                rows = []
                for i, (pixels, k) in enumerate(zip(batch.images, batch.labels)):
                    if per_class is not None and counts[k] >= per_class:
                        continue
                    name = cifake_name(counts[k], k, fmt)
                    counts[k] += 1
                    row = _real_row(split, name, classes[k], k, fmt, jpeg_quality, f"cifar-10/{batch.name}#{i}")
                    manifest.check(row)
                    if present(folder / name):
                        summary.kept += 1
                    else:
                        save_image(Image.fromarray(np.ascontiguousarray(pixels)), folder / name, fmt, jpeg_quality)
                        summary.written += 1
                    rows.append(row)
                manifest.append(rows)
                if per_class is not None and all(c >= per_class for c in counts):
                    break
    finally:
        source.close()
    summary.per_class = dict(zip(classes, counts))
    return summary


def _real_row(split: str, name: str, cls: str, k: int, fmt: str, quality: int, origin: str) -> dict[str, str]:
    return {"path": f"{split}/REAL/{name}", "label": "real", "split": split, "class": cls, "class_index": str(k),
            "prompt": "", "seed": "", "model": "", "generator": "", "revision": "", "scheduler": "", "steps": "",
            "guidance": "", "size": "32", "filter": "", "jpeg_quality": str(quality) if fmt == "jpeg" else "",
            "dtype": "", "origin": origin}
