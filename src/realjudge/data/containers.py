"""Containers: folders, zips and tar archives read the same way (names, bytes, locators)."""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from ..errors import DecodeError, SourceError

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .bmp .gif .webp .tif .tiff .ppm .pgm .pbm .heic .heif .avif".split()
)


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_archive(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


_CONTAINERS: dict[str, "Container"] = {}

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
