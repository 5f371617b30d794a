"""Containers: folders, zips and tar archives read the same way (names, bytes, locators).

Nothing is ever extracted to disk: a member is read into memory by its name inside the archive. Every
archive is read under `ArchiveLimits` (members, bytes per member, bytes in all, nesting depth), so a
hostile archive costs a bounded amount of work and memory and ends in a one-line `SourceError`
(the whole archive) or `DecodeError` (one member), never in an unbounded read or a traceback.
What each hostile case gives is listed in docs/RELIABILITY.md ("Archive and folder limits").
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePosixPath
from typing import Iterator

from ..errors import DecodeError, LimitExceeded, SourceError, UsageError, one_line
from .decode import DEFAULT_MAX_FILE_BYTES, MAX_FILE_BYTES_ENV, parse_size, read_file

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .bmp .gif .webp .tif .tiff .ppm .pgm .pbm .heic .heif .avif".split()
)


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

DEFAULT_MAX_MEMBERS = 250_000
"""Entries (files, folders, links) in one archive: CIFAKE's 120,000 images fit twice."""
DEFAULT_MAX_MEMBER_BYTES = DEFAULT_MAX_FILE_BYTES
"""Bytes of one member once inflated, and of one file read from a folder or a path (256 MiB): above
the largest file the 64 MP pixel limit lets through (an uncompressed 64 MP TIFF is 192 MB)."""
DEFAULT_MAX_TOTAL_BYTES = 4 * GiB
"""Declared inflated bytes of all the members of one archive, nested archives included."""
DEFAULT_MAX_DEPTH = 1
"""Archives opened inside an archive: 1 scores a zip inside a zip, not a zip inside that one."""

ENV_VARS = {
    "max_members": "REALJUDGE_ARCHIVE_MAX_MEMBERS",
    "max_member_bytes": MAX_FILE_BYTES_ENV,  # REALJUDGE_ARCHIVE_MAX_MEMBER_BYTES, files too
    "max_total_bytes": "REALJUDGE_ARCHIVE_MAX_TOTAL_BYTES",
    "max_depth": "REALJUDGE_ARCHIVE_MAX_DEPTH",
}
"""The environment variable that overrides each limit (an integer, optionally with K, M or G: `512M`)."""

_CHUNK = 1 * MiB


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what reading one archive (or one file) may cost. The defaults are safe for a
    command-line run on a laptop; a larger data set raises them by environment variable
    (`ENV_VARS`) or by passing `limits=` to `open_container`, `open_source` or `expand_inputs`."""

    max_members: int = DEFAULT_MAX_MEMBERS
    """Entries in one archive, nested archives' entries included. A zip is refused by the count its
    directory declares before the directory is parsed, and by the count parsed; a tar while it is listed."""
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    """Bytes of one member once inflated (or one plain file). A member is refused by its declared size
    before it is inflated, and inflating stops at the limit if the declared size lies."""
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    """Sum of the declared inflated sizes of an archive's members, nested archives included: an
    archive over it is refused whole before anything is inflated (zip bombs of overlapping members)."""
    max_depth: int = DEFAULT_MAX_DEPTH
    """How deep archives inside archives are opened; one deeper is an error naming it (0: never)."""

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            low = 0 if f.name == "max_depth" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"archive limit {f.name} must be an integer of at least {low}, got {value!r}")

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "ArchiveLimits":
        """The defaults, overridden by `ENV_VARS` set in `environ` (default: the process's), then by `overrides`."""
        environ = os.environ if environ is None else environ
        values = {}
        for name, var in ENV_VARS.items():
            raw = environ.get(var)
            if raw not in (None, ""):
                values[name] = parse_size(var, raw)
        return replace(cls(), **(values | overrides))


def current_limits(limits: ArchiveLimits | None = None) -> ArchiveLimits:
    """`limits` if given, else the defaults with the environment's overrides."""
    return limits if limits is not None else ArchiveLimits.from_env()


def is_archive(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def unsafe_name(name: str) -> str | None:
    """Why a member name is unsafe (absolute, a drive, or a `..` component), or None.

    Members are never extracted, so such a name could not write anywhere; they are refused all the
    same, because a locator that climbs out of its archive misleads whatever uses it as a path."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "a '..' component"
    return None


_ARCHIVE_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, OSError, EOFError, ValueError, struct.error,
    OverflowError, RuntimeError, zlib.error, lzma.LZMAError, IndexError, KeyError, TypeError, MemoryError,
)
"""What the standard library's zip, tar and decompressors raise on corrupt or hostile bytes."""


def _why(err: BaseException) -> str:
    if isinstance(err, MemoryError):
        return "not enough memory"
    return one_line(str(err)) or type(err).__name__


class _Budget:
    """Members and declared bytes left to one top-level archive and the archives nested in it."""

    def __init__(self, limits: ArchiveLimits):
        self.limits = limits
        self.members = limits.max_members
        self.bytes = limits.max_total_bytes
        self._spent: dict[str, tuple[int, int]] = {}

    def refund(self, label: str) -> None:
        """Give back what `label` spent: a nested archive reopened after it was let go is counted once."""
        members, nbytes = self._spent.pop(label, (0, 0))
        self.members += members
        self.bytes += nbytes

    def spend(self, label: str, members: int, nbytes: int) -> None:
        if members > self.members:
            raise LimitExceeded(f"{label}: more than {self.limits.max_members} entries in one archive, nested "
                                f"archives included ({ENV_VARS['max_members']})")
        if nbytes > self.bytes:
            raise LimitExceeded(f"{label}: its members declare more than {self.limits.max_total_bytes} bytes once "
                                f"inflated, nested archives included ({ENV_VARS['max_total_bytes']})")
        self.members -= members
        self.bytes -= nbytes
        self._spent[label] = (members, nbytes)


class Container:
    """Files of a folder or an archive, by relative POSIX name."""

    root: str
    problems: list[tuple[str, str]]
    """(name, reason) of what could not be listed (an unreadable sub-folder): errors, not silence."""

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

    def nested(self, name: str) -> "Container":
        raise DecodeError(self.locator(name), "archives inside a folder are not opened; name the archive itself")

    def close(self) -> None:
        pass


class FolderContainer(Container):
    """A folder, walked without following symbolic links to folders (so a link loop ends). A link to a
    file is read as the file it points to, if that is a regular file (see `decode.read_file`)."""

    def __init__(self, root: str | os.PathLike, limits: ArchiveLimits | None = None):
        self.root = str(root)
        self.limits = current_limits(limits)
        self.problems = []
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        if self._names is None:
            out = []
            self.problems = []

            def unreadable(err: OSError) -> None:
                where = os.path.relpath(err.filename, self.root) if err.filename else "."
                self.problems.append((where, f"folder not read ({err.strerror or err})"))

            for dirpath, dirnames, filenames in os.walk(self.root, onerror=unreadable, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel = os.path.relpath(dirpath, self.root)
                for f in sorted(filenames):
                    if not f.startswith("."):
                        out.append(f if rel == "." else PurePosixPath(*Path(rel).parts, f).as_posix())
            self._names = out
        return self._names

    def read(self, name: str, label: str | None = None) -> bytes:
        return read_file(os.path.join(self.root, name), label or self.locator(name), self.limits.max_member_bytes)

    def locator(self, name: str) -> str:
        return os.path.join(self.root, *PurePosixPath(name).parts)


class _Archive(Container):
    """What zips and tars share: limits, the shared budget, unsafe names and nested archives."""

    _NESTED_KEPT = 8

    def _setup(self, label: str, limits: ArchiveLimits | None, depth: int, budget: _Budget | None) -> None:
        self.root = label
        self.limits = current_limits(limits) if budget is None else budget.limits
        self.depth = depth
        self.budget = budget or _Budget(self.limits)
        self.budget.refund(label)
        self.problems = []
        self._nested: OrderedDict[str, Container] = OrderedDict()
        self._members: dict = {}  # name -> the archive's own entry (ZipInfo, TarInfo), set by the subclass
        self._sorted: list[str] | None = None

    def _has(self, name: str) -> bool:
        return name in self._members

    def names(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self._members)
        return self._sorted

    def locator(self, name: str) -> str:
        return f"{self.root}::{name}"

    def _split_nested(self, name: str) -> tuple[str, str] | None:
        """`inner.zip::member` to (inner.zip, member) where inner.zip is an archive member of this one."""
        for m in re.finditer("::", name):
            head = name[: m.start()]
            if is_archive(head) and self._has(head):
                return head, name[m.end():]
        return None

    def read(self, name: str, label: str | None = None) -> bytes:
        label = label or self.locator(name)
        if not self._has(name):
            split = self._split_nested(name)
            if split is None:
                raise DecodeError(label, "no such member in the archive")
            inner, rest = split
            return self.nested(inner).read(rest, label)
        why = unsafe_name(name)
        if why:
            raise DecodeError(label, f"unsafe member name ({why}): not read")
        return self._read_member(name, label)

    def _read_member(self, name: str, label: str) -> bytes:
        raise NotImplementedError

    def nested(self, name: str) -> Container:
        """The archive held in member `name`, opened in memory one level deeper (DecodeError if it
        cannot be: too deep, unreadable, or over what is left of the shared budget)."""
        if name in self._nested:
            self._nested.move_to_end(name)
            return self._nested[name]
        label = self.locator(name)
        if self.depth + 1 > self.limits.max_depth:
            raise DecodeError(label, f"nested archive not opened: the depth limit is {self.limits.max_depth} "
                                     f"({ENV_VARS['max_depth']})")
        data = self.read(name)
        try:
            inner = _open_archive(io.BytesIO(data), name, label, self.limits, self.depth + 1, self.budget)
        except SourceError as err:
            raise DecodeError(label, str(err).removeprefix(f"{label}: ")) from None
        self._nested[name] = inner
        while len(self._nested) > self._NESTED_KEPT:  # reopened on demand, and counted once (`refund`)
            self._nested.popitem(last=False)[1].close()
        return inner

    def _bounded_read(self, f, declared: int, label: str) -> bytes:
        """Read a member in chunks, stopping at the per-member limit whatever its header declared."""
        limit = self.limits.max_member_bytes
        chunks, total = [], 0
        while True:
            chunk = f.read(min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise DecodeError(label, f"member inflates past {limit} bytes although it declares {declared} "
                                         f"({ENV_VARS['max_member_bytes']})")
        return b"".join(chunks)

    def _too_large(self, declared: int) -> str | None:
        if declared > self.limits.max_member_bytes:
            return (f"member declares {declared} bytes once inflated; the limit is {self.limits.max_member_bytes} "
                    f"({ENV_VARS['max_member_bytes']})")
        return None


class ZipContainer(_Archive):
    def __init__(self, path: str | io.BytesIO, limits: ArchiveLimits | None = None, label: str | None = None,
                 depth: int = 0, budget: _Budget | None = None):
        self._setup(label or str(path), limits, depth, budget)
        try:
            declared = _declared_zip_entries(path)
            if declared is not None and declared > self.budget.members:
                raise LimitExceeded(f"{self.root}: its directory declares {declared} entries; the limit is "
                                    f"{self.limits.max_members} ({ENV_VARS['max_members']})")
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except LimitExceeded:
            raise
        except _ARCHIVE_ERRORS as err:
            raise SourceError(f"{self.root}: not a readable zip archive ({_why(err)})") from None
        files = [i for i in infos if not i.filename.endswith("/")]  # ZipInfo.is_dir() fails on an empty name
        self.budget.spend(self.root, len(infos), sum(i.file_size for i in files))
        self._members = {i.filename: i for i in files}

    def _read_member(self, name: str, label: str) -> bytes:
        info = self._members[name]
        if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
            raise DecodeError(label, "symbolic link member: links in archives are not followed")
        why = self._too_large(info.file_size)
        if why:
            raise DecodeError(label, why)
        try:
            with self._zip.open(info) as f:
                data = self._bounded_read(f, info.file_size, label)
        except DecodeError:
            raise
        except _ARCHIVE_ERRORS as err:
            raise DecodeError(label, f"cannot read archive member ({_why(err)})") from None
        if len(data) != info.file_size:  # a stored member whose declared size is larger than its data
            raise DecodeError(label, f"member holds {len(data)} bytes but declares {info.file_size}")
        return data

    def close(self) -> None:
        self._zip.close()


def _declared_zip_entries(path) -> int | None:
    """The entry count the zip's end record declares, read before its directory is parsed."""
    finder = getattr(zipfile, "_EndRecData", None)
    if finder is None:
        return None
    try:
        if isinstance(path, (str, os.PathLike)):
            with open(path, "rb") as fp:
                rec = finder(fp)
        else:
            rec = finder(path)
            path.seek(0)
        return int(rec[zipfile._ECD_ENTRIES_TOTAL]) if rec else None
    except Exception:  # a precheck only: zipfile itself reports a corrupt end record
        return None


class _BoundedStream:
    """A (decompressed) tar stream that refuses to be read or skipped past a position, or in one read
    larger than a member may be: a tar.gz bomb or a long-name header claiming gigabytes stops there."""

    def __init__(self, raw, cap: int, max_read: int, label: str, closers: list):
        self.raw, self.cap, self.max_read, self.label = raw, cap, max_read, label
        self._closers = closers

    def _refuse(self, what: str):
        raise LimitExceeded(f"{self.label}: {what}; the limits are {ENV_VARS['max_total_bytes']} and "
                            f"{ENV_VARS['max_member_bytes']}")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.max_read:
            self._refuse(f"a header or member asks for a read of {n} bytes")
        if self.raw.tell() + n > self.cap:
            self._refuse(f"the archive inflates past {self.cap} bytes")
        return self.raw.read(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0 and pos > self.cap:
            self._refuse(f"a member reaches past {self.cap} bytes")
        return self.raw.seek(pos, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        for c in self._closers:
            c.close()
        self._closers = []


class TarContainer(_Archive):
    """Tar archives (plain, gzip, bzip2, xz). A plain tar is read at random by member offsets; a
    compressed one is streamed once on the first read and its images kept in memory (at most the
    declared total the limits allow)."""

    def __init__(self, path: str | io.BytesIO, limits: ArchiveLimits | None = None, label: str | None = None,
                 depth: int = 0, budget: _Budget | None = None):
        self._setup(label or str(path), limits, depth, budget)
        self._src = path
        self._blobs: dict[str, bytes | DecodeError] | None = None
        self._plain: tarfile.TarFile | None = None
        members = total = 0
        try:
            with self._open() as tf:
                while True:
                    try:
                        m = tf.next()
                    except LimitExceeded:
                        raise
                    except _ARCHIVE_ERRORS as err:
                        if not members:
                            raise
                        self.problems.append(("", f"listing stopped after {members} entries ({_why(err)})"))
                        break
                    if m is None:
                        break
                    members += 1
                    if members > self.budget.members:
                        self.budget.spend(self.root, members, 0)  # raises: over the member limit
                    if m.isdir():
                        continue
                    if m.isreg():
                        total += max(m.size, 0)  # a negative (base-256) size refunds nothing
                        if total > self.budget.bytes:
                            self.budget.spend(self.root, members, total)  # raises: over the byte limit
                    self._members[_clean_member(m.name)] = m
                self.compressed = self._is_compressed
        except LimitExceeded:
            raise
        except _ARCHIVE_ERRORS as err:
            raise SourceError(f"{self.root}: not a readable tar archive ({_why(err)})") from None
        self.budget.spend(self.root, members, total)

    def _open(self) -> tarfile.TarFile:
        owned = isinstance(self._src, (str, os.PathLike))
        raw = open(self._src, "rb") if owned else self._src
        closers = [raw] if owned else []
        try:
            raw.seek(0)
            magic = raw.read(6)
            raw.seek(0)
            self._is_compressed = True
            if magic[:2] == b"\x1f\x8b":
                stream = gzip.GzipFile(fileobj=raw, mode="rb")
            elif magic[:3] == b"BZh":
                stream = bz2.BZ2File(raw)
            elif magic == b"\xfd7zXZ\x00":
                stream = lzma.LZMAFile(raw)
            else:
                stream, self._is_compressed = raw, False
            if stream is not raw:
                closers.insert(0, stream)
            cap = self.limits.max_total_bytes + 2 * tarfile.BLOCKSIZE * (self.limits.max_members + 2)
            bounded = _BoundedStream(stream, cap, max(self.limits.max_member_bytes, _CHUNK), self.root, closers)
            tf = tarfile.open(fileobj=bounded, mode="r:")
        except BaseException:
            for c in closers:
                c.close()
            raise
        tf._extfileobj = False  # closing the TarFile closes our streams (and the file we opened)
        return tf

    def _refusal(self, m: tarfile.TarInfo) -> str | None:
        if m.issym():
            return f"symbolic link member (to {one_line(m.linkname)!r}): links in archives are not followed"
        if m.islnk():
            return f"hard link member (to {one_line(m.linkname)!r}): links in archives are not followed"
        if not m.isreg():
            return "not a regular file member (a device, FIFO or other special entry)"
        if m.size < 0:
            return f"member declares a negative size ({m.size})"
        return self._too_large(m.size)

    def _extract(self, tf: tarfile.TarFile, m: tarfile.TarInfo, label: str) -> bytes:
        why = self._refusal(m)
        if why:
            raise DecodeError(label, why)
        try:
            f = tf.extractfile(m)
            if f is None:
                raise DecodeError(label, "unreadable member")
            return self._bounded_read(f, m.size, label)
        except (DecodeError, LimitExceeded) as err:
            raise DecodeError(label, str(err).removeprefix(f"{self.root}: ")) from None
        except _ARCHIVE_ERRORS as err:
            raise DecodeError(label, f"cannot read archive member ({_why(err)})") from None

    def _read_member(self, name: str, label: str) -> bytes:
        m = self._members[name]
        if not self.compressed:
            if self._plain is None:
                try:
                    self._plain = self._open()
                except _ARCHIVE_ERRORS as err:
                    raise DecodeError(label, f"cannot reopen the archive ({_why(err)})") from None
            return self._extract(self._plain, m, label)
        if self._blobs is None:
            self._blobs = {}
            wanted = {n for n in self._members if _worth_keeping(n)} | {name}
            for n, blob in self._stream(wanted):
                self._blobs[n] = blob
        blob = self._blobs.get(name)
        if blob is None:  # not kept on the first pass (not an image name): stream again for it alone
            blob = next((b for _, b in self._stream({name})), DecodeError(label, "no such member in the archive"))
        if isinstance(blob, DecodeError):
            raise DecodeError(label, blob.reason)
        return blob

    def _stream(self, wanted: set[str]) -> Iterator[tuple[str, bytes | DecodeError]]:
        """One pass over the archive: (name, bytes or error) of the wanted members, in archive order."""
        try:
            with self._open() as tf:
                while wanted:
                    m = tf.next()
                    if m is None:
                        break
                    name = _clean_member(m.name)
                    listed = self._members.get(name)
                    if name not in wanted or listed is None or listed.offset != m.offset:
                        continue
                    wanted.discard(name)
                    try:
                        yield name, self._extract(tf, m, self.locator(name))
                    except DecodeError as err:
                        yield name, err
        except (LimitExceeded, *_ARCHIVE_ERRORS) as err:
            reason = f"cannot read archive member ({_why(err)})"
            for name in sorted(wanted):
                yield name, DecodeError(self.locator(name), reason)

    def iter_bytes(self, names: list[str]) -> Iterator[tuple[str, bytes | DecodeError]]:
        direct = {n for n in names if self._has(n) and not unsafe_name(n)}
        for n in names:
            if n not in direct:
                try:
                    yield n, self.read(n)
                except DecodeError as err:
                    yield n, err
        if direct:
            yield from self._stream(direct)

    def close(self) -> None:
        if self._plain is not None:
            self._plain.close()
            self._plain = None


def _worth_keeping(name: str) -> bool:
    """What a compressed tar's first pass keeps in memory: what detect and the layouts read."""
    return is_image_name(name) or is_archive(name) or name.lower().endswith(".csv")


def _clean_member(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _open_archive(src, name: str, label: str, limits: ArchiveLimits | None, depth: int = 0,
                  budget: _Budget | None = None) -> _Archive:
    if name.lower().endswith(".zip"):
        return ZipContainer(src, limits, label, depth, budget)
    return TarContainer(src, limits, label, depth, budget)


def list_images(container: Container) -> Iterator[tuple[str, str | None]]:
    """(locator, None) for every image of a container, archives nested in an archive included, and
    (locator, reason) for what could not be listed or opened (a nested archive too deep or corrupt)."""
    names = container.names()  # listing may record problems
    for where, reason in container.problems:
        yield (container.locator(where) if where not in ("", ".") else container.root), reason
    for n in names:
        if is_image_name(n):
            yield container.locator(n), None
        elif is_archive(n) and isinstance(container, _Archive):
            try:
                inner = container.nested(n)
            except DecodeError as err:
                yield container.locator(n), err.reason
                continue
            yield from list_images(inner)


_CONTAINERS: OrderedDict[str, tuple[tuple, Container]] = OrderedDict()
_KEPT = 32


def open_container(path: str | os.PathLike, limits: ArchiveLimits | None = None) -> Container:
    """Open the folder or archive at `path` under `limits` (default: `ArchiveLimits.from_env()`).
    Archives are remembered (a few dozen, while their file and the limits are unchanged), so that
    reading their members one by one opens each once."""
    key = os.path.abspath(path)
    p = Path(path)
    limits = current_limits(limits)
    if p.is_dir():
        return FolderContainer(path, limits)
    try:
        st = p.stat()
    except (OSError, ValueError):
        raise SourceError(f"{path}: no such file or folder") from None
    signature = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _CONTAINERS.get(key)
    if hit and hit[0] == signature and hit[1].limits == limits:
        _CONTAINERS.move_to_end(key)
        return hit[1]
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{path}: not a regular file, a folder, a zip or a tar archive")
    if not is_archive(path):
        raise SourceError(f"{path}: not a folder, a zip or a tar archive")
    c = _open_archive(str(path), str(path), str(path), limits)
    _CONTAINERS[key] = (signature, c)
    while len(_CONTAINERS) > _KEPT:
        _CONTAINERS.popitem(last=False)
    return c


def close_containers() -> None:
    """Forget (and close) every remembered archive: a long-lived process's way to free their files."""
    while _CONTAINERS:
        _CONTAINERS.popitem()[1][1].close()
