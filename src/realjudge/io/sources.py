"""Data sources: layouts on disk (folders, zips, tars, CSV manifests) turned into labelled samples.

A `Sample` never carries its file name into a model: names, sizes and mtimes leak labels in public
sets (CIFAKE numbers REAL and FAKE differently). Splits come from a hash of the bytes, or of the
sample's group where near-duplicates share one (`split_key`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from ..errors import DecodeError, SourceError

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .bmp .gif .webp .tif .tiff .ppm .pgm .pbm .heic .heif .avif".split()
)
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
LAYOUTS = ("cifake", "forensynths", "genimage", "flat", "manifest", "unlabelled")
LABELS = {"real": 0, "0": 0, "fake": 1, "1": 1}


@dataclass
class Sample:
    """One image of a data source. `locator` is a path, or `archive::member`."""

    locator: str
    label: int | None = None
    source: str = ""
    generator: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Samples that must land on one side of every split (e.g. one prompt rendered by several
    # generators: near-identical pictures that would otherwise leak content across the split).
    group: str | None = None
    _id: str | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = content_id(self.read_bytes())
        return self._id

    def read_bytes(self) -> bytes:
        if "unreadable" in self.meta:  # found unreadable while listing (a corrupt archive)
            from ..errors import DecodeError

            raise DecodeError(self.locator, self.meta["unreadable"])
        archive, sep, member = self.locator.partition("::")
        if not sep:
            from .decode import read_file

            return read_file(archive, self.locator)
        return open_container(archive).read(member, self.locator)


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_SHA256_GROUP = re.compile(r"sha256:[0-9a-fA-F]{64}")


def split_key(s: Sample) -> str:
    """What the validation and protocol splits hash: the sample's group when it has one, otherwise
    its bytes (so byte-identical duplicates stay together either way). A group written
    `sha256:HEX` follows the image whose bytes hash to HEX: a fake synthesized from a real photograph
    (`realjudge data synthesize`) lands on the same side as that photograph, wherever it is read from."""
    if s.group is None:
        return s.id
    if _SHA256_GROUP.fullmatch(s.group):
        return s.group[7:].lower()
    return hashlib.sha256(f"group:{s.group}".encode()).hexdigest()


def assign_groups(samples: list[Sample], pattern: str) -> None:
    """Group the samples whose locator matches the regular expression `pattern` by its first capture
    group (or the whole match); samples it does not match stay ungrouped."""
    rx = compile_group_pattern(pattern)
    for s in samples:
        m = rx.search(s.locator)
        if m:
            s.group = m.group(1) if rx.groups else m.group(0)


def compile_group_pattern(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise SourceError(f"group pattern {pattern!r} is not a regular expression ({err})") from None


def is_validation(sample_id: str, fraction: float, salt: str = "") -> bool:
    """Stable split from the bytes' hash: byte-identical duplicates always land on the same side."""
    if not 0.0 <= fraction < 1.0:
        raise SourceError(f"validation fraction must be in [0, 1), got {fraction}")
    digest = hashlib.sha256((salt + sample_id).encode()).digest() if salt else bytes.fromhex(sample_id[:16])
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def is_archive(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------- containers


class Container:
    """Files of a folder or an archive, by relative POSIX name."""

    root: str

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str, label: str | None = None) -> bytes:
        raise NotImplementedError

    def iter_bytes(self, names: list[str]) -> Iterator[tuple[str, bytes | DecodeError]]:
        """Yield (name, bytes or the read error) in an order cheap for the container."""
        for name in names:
            try:
                yield name, self.read(name)
            except DecodeError as err:
                yield name, err

    def locator(self, name: str) -> str:
        raise NotImplementedError


class FolderContainer(Container):
    def __init__(self, root: str | os.PathLike):
        self.root = str(root)
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        if self._names is None:
            out = []
            for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel = os.path.relpath(dirpath, self.root)
                for f in sorted(filenames):
                    if not f.startswith("."):
                        out.append(f if rel == "." else PurePosixPath(*Path(rel).parts, f).as_posix())
            self._names = out
        return self._names

    def read(self, name: str, label: str | None = None) -> bytes:
        from .decode import read_file

        return read_file(os.path.join(self.root, name), label or self.locator(name))

    def locator(self, name: str) -> str:
        return os.path.join(self.root, *PurePosixPath(name).parts)


class ZipContainer(Container):
    def __init__(self, path: str):
        self.root = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise SourceError(f"{path}: not a readable zip archive ({err})") from None
        self._infos = {i.filename: i for i in self._zip.infolist() if not i.is_dir()}

    def names(self) -> list[str]:
        return sorted(self._infos)

    def read(self, name: str, label: str | None = None) -> bytes:
        try:
            return self._zip.read(self._infos[name])
        except KeyError:
            raise DecodeError(label or self.locator(name), "no such member in the archive") from None
        except (zipfile.BadZipFile, OSError, RuntimeError) as err:
            raise DecodeError(label or self.locator(name), f"cannot read archive member ({err})") from None

    def locator(self, name: str) -> str:
        return f"{self.root}::{name}"


class TarContainer(Container):
    """Tar archives are read sequentially; random access loads members once into memory."""

    def __init__(self, path: str):
        self.root = path
        self._names: list[str] | None = None
        self._blobs: dict[str, bytes] | None = None
        try:
            with tarfile.open(path, "r:*") as tf:
                self._names = [m.name for m in tf if m.isfile()]
        except (tarfile.TarError, OSError, EOFError) as err:
            raise SourceError(f"{path}: not a readable tar archive ({err})") from None
        self._names = [_clean_member(n) for n in self._names]

    def names(self) -> list[str]:
        return sorted(self._names or [])

    def iter_bytes(self, names: list[str]) -> Iterator[tuple[str, bytes | DecodeError]]:
        wanted = set(names)
        with tarfile.open(self.root, "r:*") as tf:
            for m in tf:
                name = _clean_member(m.name)
                if m.isfile() and name in wanted:
                    f = tf.extractfile(m)
                    yield name, f.read() if f else DecodeError(self.locator(name), "unreadable member")

    def read(self, name: str, label: str | None = None) -> bytes:
        if self._blobs is None:
            self._blobs = {n: b for n, b in self.iter_bytes(self.names()) if isinstance(b, bytes)}
        try:
            return self._blobs[name]
        except KeyError:
            raise DecodeError(label or self.locator(name), "no such member in the archive") from None

    def locator(self, name: str) -> str:
        return f"{self.root}::{name}"


def _clean_member(name: str) -> str:
    return name[2:] if name.startswith("./") else name


_CONTAINERS: dict[str, Container] = {}


def open_container(path: str | os.PathLike) -> Container:
    """Open (and remember) the folder or archive at `path`."""
    key = os.path.abspath(path)
    if key in _CONTAINERS:
        return _CONTAINERS[key]
    p = Path(path)
    if p.is_dir():
        c: Container = FolderContainer(path)
    elif not p.exists():
        raise SourceError(f"{path}: no such file or folder")
    elif str(path).lower().endswith(".zip"):
        c = ZipContainer(str(path))
    elif is_archive(path):
        c = TarContainer(str(path))
    else:
        raise SourceError(f"{path}: not a folder, a zip or a tar archive")
    _CONTAINERS[key] = c
    return c


# --------------------------------------------------------------------------- layouts

_CIFAKE_CLASS = re.compile(r"\((\d+)\)\.\w+$")


def _parts(name: str) -> list[str]:
    return list(PurePosixPath(name).parts[:-1])


def _cifake(name: str) -> tuple[int, str | None, dict] | None:
    parts = _parts(name)
    for i, p in enumerate(parts):
        if p in ("REAL", "FAKE"):
            label = int(p == "FAKE")
            meta: dict[str, Any] = {}
            if i > 0 and parts[i - 1].lower() in ("train", "test"):
                meta["split"] = parts[i - 1].lower()
            m = _CIFAKE_CLASS.search(name)
            k = int(m.group(1)) if m else 0
            # Per-class statistics only (never a model input). The files say "NNNN.jpg" for class 0
            # and "NNNN (k).jpg" for class k-1, k = 2..10: there is no "(1)" in either folder.
            meta["class"] = k - 1 if k >= 2 else 0
            return label, ("sd14" if label else None), meta
    return None


def _marker_rule(real: str, fake: str, lower: bool = False) -> Callable[[str], tuple | None]:
    def rule(name: str) -> tuple[int, str | None, dict] | None:
        parts = _parts(name)
        for i, p in enumerate(parts):
            q = p.lower() if lower else p
            if q in (real, fake):
                label = int(q == fake)
                gen = parts[0] if i > 0 else None
                meta = {"group": "/".join(parts[:i])} if i > 0 else {}
                return label, gen if label else None, meta | ({"generator_group": gen} if gen else {})
        return None

    return rule


_RULES: dict[str, Callable[[str], tuple | None]] = {
    "cifake": _cifake,
    "forensynths": _marker_rule("0_real", "1_fake"),
    "genimage": _marker_rule("nature", "ai"),
    "flat": _marker_rule("real", "fake", lower=True),
}


def _find_manifest(container: Container) -> str | None:
    names = [n for n in container.names() if n.lower().endswith(".csv")]
    top = [n for n in names if "/" not in n or n.count("/") == 1 and n.endswith("manifest.csv")]
    return next((n for n in top if n.endswith("manifest.csv")), top[0] if len(top) == 1 else None)


def detect_layout(container: Container) -> str:
    images = [n for n in container.names() if is_image_name(n)]
    if _find_manifest(container):
        return "manifest"
    for layout, rule in _RULES.items():
        hits = [rule(n) for n in images[:: max(1, len(images) // 2000)]]
        labels = {h[0] for h in hits if h}
        if labels == {0, 1}:
            return layout
    return "unlabelled"


def _manifest_samples(container: Container, manifest: str, source: str) -> list[Sample]:
    text = container.read(manifest).decode("utf-8-sig", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "path" not in rows[0]:
        raise SourceError(f"{container.root}: manifest {manifest} needs a 'path' column")
    base = PurePosixPath(manifest).parent
    available = set(container.names())
    out = []
    for i, row in enumerate(rows, start=2):
        raw = (row.get("label") or "").strip().lower()
        if raw and raw not in LABELS:
            raise SourceError(f"{container.root}: {manifest} line {i}: label must be real|fake|0|1, got {raw!r}")
        rel = (base / row["path"]).as_posix() if str(base) != "." else row["path"]
        if rel not in available:
            raise SourceError(f"{container.root}: {manifest} line {i}: {row['path']} is not in the source")
        label = LABELS[raw] if raw else None
        gen = (row.get("generator") or "").strip() or None
        meta = {k: v for k, v in row.items() if k not in ("path", "label", "generator", "group") and v not in (None, "")}
        s = Sample(container.locator(rel), label, row.get("source_name") or source, gen, meta,
                   (row.get("group") or "").strip() or None)
        if row.get("sha256"):
            meta["sha256"] = row["sha256"]
        out.append(s)
    return out


def open_source(
    path: str | os.PathLike,
    layout: str = "auto",
    label: int | None = None,
    name: str | None = None,
) -> list[Sample]:
    """List the samples of a folder, archive or CSV manifest.

    `layout` is one of `LAYOUTS` or "auto"; `label` forces every sample's label (e.g. a folder of
    real photographs given as `--real DIR`).
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise SourceError(f"unknown layout {layout!r}; known layouts: {', '.join(LAYOUTS)}")
    p = Path(path)
    source = name or p.name.split(".")[0] or str(path)
    if p.is_file() and p.suffix.lower() == ".csv":
        container: Container = open_container(p.parent)
        manifest: str | None = p.name
        layout = "manifest"
    else:
        container = open_container(path)
        manifest = _find_manifest(container)
        if layout == "auto":
            layout = detect_layout(container)
    if layout == "manifest":
        if not manifest:
            raise SourceError(f"{path}: layout 'manifest' needs a CSV file with path,label columns")
        samples = _manifest_samples(container, manifest, source)
    else:
        rule = _RULES.get(layout)
        samples = []
        for n in container.names():
            if not is_image_name(n):
                continue
            hit = rule(n) if rule else None
            if rule and hit is None:
                continue
            lab, gen, meta = hit if hit else (None, None, {})
            samples.append(Sample(container.locator(n), lab, source, gen, meta))
    if label is not None:
        for s in samples:
            s.label = label
    if not samples:
        raise SourceError(
            f"{path}: no images found for layout {layout!r}; known layouts: {', '.join(LAYOUTS)} "
            "(CIFAKE train|test/REAL|FAKE, ForenSynths 0_real|1_fake, GenImage nature|ai, flat real|fake, "
            "a CSV manifest path,label[,generator], or an unlabelled folder)"
        )
    return samples


def require_labels(samples: list[Sample], what: str) -> None:
    missing = sum(s.label is None for s in samples)
    if missing:
        raise SourceError(
            f"{what}: {missing} of {len(samples)} images have no label; use a labelled layout "
            f"({', '.join(LAYOUTS[:-1])}) or give folders as --real/--fake"
        )


def iter_sample_bytes(samples: list[Sample]) -> Iterator[tuple[Sample, bytes | DecodeError]]:
    """Read every sample's bytes, grouped per container so tar archives stream once."""
    by_root: dict[str, list[tuple[str, Sample]]] = {}
    loose: list[Sample] = []
    for s in samples:
        archive, sep, member = s.locator.partition("::")
        if sep:
            by_root.setdefault(archive, []).append((member, s))
        else:
            loose.append(s)
    for s in loose:
        try:
            yield s, s.read_bytes()
        except DecodeError as err:
            yield s, err
    for archive, pairs in by_root.items():
        index = {m: s for m, s in pairs}
        for member, blob in open_container(archive).iter_bytes([m for m, _ in pairs]):
            yield index[member], blob


def expand_inputs(paths: list[str]) -> tuple[list[Sample], list[str]]:
    """Files, folders (recursive), globs and archives to samples; unmatched inputs are returned apart."""
    import glob

    samples: list[Sample] = []
    missing: list[str] = []
    for raw in paths:
        matches = sorted(glob.glob(raw, recursive=True)) if glob.has_magic(raw) else [raw]
        if not matches:
            missing.append(raw)
            continue
        for m in matches:
            p = Path(m)
            if p.is_dir() or (p.is_file() and is_archive(m)):
                try:
                    c = open_container(m)
                except SourceError as err:
                    why = str(err).removeprefix(f"{m}: ")
                    samples.append(Sample(m, source="input", meta={"unreadable": f"corrupt archive ({why})"}))
                    continue
                names = [n for n in c.names() if is_image_name(n)]
                samples.extend(Sample(c.locator(n), source="input") for n in names)
            elif p.exists():
                samples.append(Sample(m, source="input"))
            else:
                missing.append(m)
    return samples, missing


__all__ = [
    "Sample", "open_source", "open_container", "expand_inputs", "iter_sample_bytes", "is_validation", "split_key",
    "content_id", "require_labels", "LAYOUTS",
]
