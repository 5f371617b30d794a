"""What a user types after `detect` or `explain`: files, folders, globs and archives, expanded to samples."""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from .containers import is_archive, is_image_name, open_container
from .samples import Sample


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
