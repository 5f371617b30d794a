"""What a user types after `detect` or `explain`: files, folders, globs and archives, expanded to samples."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from ..errors import LimitExceeded, SourceError
from .containers import ArchiveLimits, is_archive, list_images, open_container
from .samples import Sample


def expand_inputs(paths: list[str], limits: ArchiveLimits | None = None) -> tuple[list[Sample], list[str]]:
    """Files, folders (recursive), globs and archives to samples; unmatched inputs are returned apart.

    An archive, or a member, that cannot be read becomes a sample that fails with its reason when it
    is read (one error record each), so nothing else in the batch is lost. Archives inside an archive
    are opened up to `limits.max_depth`; archives inside a folder are not opened."""
    samples: list[Sample] = []
    missing: list[str] = []
    for raw in paths:
        matches = expand_glob(raw) if glob.has_magic(raw) else [raw]
        if not matches:
            missing.append(raw)
            continue
        for m in matches:
            p = Path(m)
            try:
                is_dir, is_file, exists = p.is_dir(), p.is_file(), p.exists()
            except (OSError, ValueError):  # an embedded NUL, a name too long
                missing.append(m)
                continue
            if is_dir or (is_file and is_archive(m)):
                try:
                    c = open_container(m, limits)
                except SourceError as err:
                    why = str(err).removeprefix(f"{m}: ")
                    reason = why if isinstance(err, LimitExceeded) else f"corrupt archive ({why})"
                    samples.append(Sample(m, source="input", meta={"unreadable": reason}))
                    continue
                for locator, reason in list_images(c):
                    samples.append(Sample(locator, source="input", meta={"unreadable": reason} if reason else {}))
            elif exists:
                samples.append(Sample(m, source="input"))  # a special file (a FIFO) fails when read, unread
            else:
                missing.append(m)
    return samples, missing


def expand_glob(pattern: str) -> list[str]:
    """`glob.glob(pattern, recursive=True)`, except that `**` walks folders without following symbolic
    links to folders: the standard library's follows them, and two links to `.` make it run forever."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))
    if pattern.endswith("/") and pattern.strip("/"):  # folders only, written with their slash, as glob does
        return sorted({p if p.endswith("/") else p + "/" for p in expand_glob(pattern.rstrip("/")) if os.path.isdir(p)})
    parts = re.split(r"/+", pattern)
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    base = "/".join(fixed) if fixed != [""] else "/"
    rx = re.compile(_translate(pattern), re.S)
    out = []
    for dirpath, dirnames, filenames in os.walk(base or ".", followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames + sorted(filenames):
            path = os.path.join(dirpath, name)
            if not base:
                path = path.removeprefix("./")
            if rx.fullmatch(path):
                out.append(path)
    if parts[-1] == "**" and len(parts) > 1 and os.path.isdir(base or "."):
        head = "/".join(parts[:-1])
        if "**" not in head:  # `dir/**` also names `dir/` itself
            out.extend(glob.glob(head + "/"))
    return sorted(set(out))


def _translate(pattern: str) -> str:
    """A glob pattern (with `**` for any depth of folders) to a regular expression over `/` paths."""
    pieces = []
    parts = re.split(r"/+", pattern)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            pieces.append(r"(?:(?!\.)[^/]+)(?:/(?!\.)[^/]+)*" if last else r"(?:(?!\.)[^/]+/)*")
            continue
        hidden = "" if part.startswith(".") or not glob.has_magic(part) else r"(?!\.)"
        pieces.append(hidden + _translate_part(part) + ("" if last else "/"))
    return "".join(pieces)


def _translate_part(part: str) -> str:
    out, i = [], 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = part.find("]", i + 2 if part[i + 1:i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(re.escape(ch))
            else:
                body = part[i + 1:j]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + re.sub(r"([\\\[&~|])", r"\\\1", body) + "]")
                i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)
