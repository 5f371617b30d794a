"""Layouts on disk (CIFAKE, ForenSynths, GenImage, flat, CSV manifest, unlabelled) turned into
labelled samples."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from ..errors import DecodeError, SourceError
from .containers import ArchiveLimits, Container, is_image_name, open_container
from .samples import LABELS, Sample

LAYOUTS = ("cifake", "forensynths", "genimage", "flat", "manifest", "unlabelled")






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
    try:
        text = container.read(manifest).decode("utf-8-sig", errors="replace")
    except DecodeError as err:
        raise SourceError(f"{container.root}: manifest {manifest}: {err.reason}") from None
    try:
        # newline="": the csv module reads CR, LF and CRLF itself (a stray CR is then no error)
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as err:  # a NUL byte, a field over the csv module's size limit
        raise SourceError(f"{container.root}: manifest {manifest} is not readable CSV ({err})") from None
    if not rows or "path" not in rows[0]:
        raise SourceError(f"{container.root}: manifest {manifest} needs a 'path' column")
    base = PurePosixPath(manifest).parent
    available = set(container.names())
    out = []
    for i, row in enumerate(rows, start=2):
        raw = (row.get("label") or "").strip().lower()
        if raw and raw not in LABELS:
            raise SourceError(f"{container.root}: {manifest} line {i}: label must be real|fake|0|1, got {raw!r}")
        row = {k: v for k, v in row.items() if k is not None}  # cells past the header's columns
        row["path"] = row.get("path") or ""  # a short row has no path cell at all
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
    limits: ArchiveLimits | None = None,
) -> list[Sample]:
    """List the samples of a folder, archive or CSV manifest.

    `layout` is one of `LAYOUTS` or "auto"; `label` forces every sample's label (e.g. a folder of
    real photographs given as `--real DIR`). Archives are read under `limits` (default: the
    `ArchiveLimits` defaults and their environment overrides); archives inside a source are not opened.
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise SourceError(f"unknown layout {layout!r}; known layouts: {', '.join(LAYOUTS)}")
    p = Path(path)
    source = name or p.name.split(".")[0] or str(path)
    if p.is_file() and p.suffix.lower() == ".csv":
        container: Container = open_container(p.parent, limits)
        manifest: str | None = p.name
        layout = "manifest"
    else:
        container = open_container(path, limits)
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
