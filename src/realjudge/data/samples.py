"""Samples: one image of a data source, its content id and the split key that keeps
near-duplicates on one side.

A `Sample` never carries its file name into a model: names, sizes and mtimes leak labels in public
sets (CIFAKE numbers REAL and FAKE differently). Splits come from a hash of the bytes, or of the
sample's group where near-duplicates share one (`split_key`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..errors import DecodeError, SourceError
from .containers import is_archive, open_container

_SHA256_GROUP = re.compile(r"sha256:[0-9a-fA-F]{64}")

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

    @property
    def has_id(self) -> bool:
        """Whether the content id is known without reading the bytes."""
        return self._id is not None

    def learn_id(self, data_or_id: bytes | str) -> str:
        """Record the content id from bytes already read (or an id computed from them), so that
        `id` never rereads the file."""
        self._id = data_or_id if isinstance(data_or_id, str) else content_id(data_or_id)
        return self._id

    def read_bytes(self) -> bytes:
        if "unreadable" in self.meta:  # found unreadable while listing (a corrupt archive)
            raise DecodeError(self.locator, self.meta["unreadable"])
        archive, sep, member = self.locator.partition("::")
        if not sep or not is_archive(archive):  # a plain file (whose name may hold "::")
            from .decode import read_file

            return read_file(self.locator)
        try:
            container = open_container(archive)
        except SourceError as err:  # the archive changed or vanished since it was listed
            raise DecodeError(self.locator, str(err).removeprefix(f"{archive}: ")) from None
        return container.read(member, self.locator)


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def iter_sample_bytes(samples: list[Sample]) -> Iterator[tuple[Sample, bytes | DecodeError]]:
    """Read every sample's bytes, grouped per container so tar archives stream once."""
    by_root: dict[str, list[tuple[str, Sample]]] = {}
    loose: list[Sample] = []
    for s in samples:
        archive, sep, member = s.locator.partition("::")
        if sep and is_archive(archive) and "unreadable" not in s.meta:
            by_root.setdefault(archive, []).append((member, s))
        else:
            loose.append(s)
    for s in loose:
        try:
            yield s, s.read_bytes()
        except DecodeError as err:
            yield s, err
    for archive, pairs in by_root.items():
        index: dict[str, list[Sample]] = {}
        for m, s in pairs:
            index.setdefault(m, []).append(s)
        try:
            container = open_container(archive)
        except SourceError as err:  # the archive changed or vanished since it was listed
            for _, s in pairs:
                yield s, DecodeError(s.locator, str(err).removeprefix(f"{archive}: "))
            continue
        for member, blob in container.iter_bytes(list(index)):
            for s in index.pop(member, []):
                yield s, blob
