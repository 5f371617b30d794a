"""`detect --explain` and `realjudge explain`: one overlay PNG per scored record, in a folder."""

from __future__ import annotations

import re
from pathlib import Path

from .explanation import describe_explained, explain_prepared


def _safe_stem(locator: str) -> str:
    """A file name from a path or `archive::member`: the last component, unsafe characters replaced."""
    last = re.split(r"[\\/]|::", locator.rstrip("/"))[-1] or "image"
    stem = last.rsplit(".", 1)[0] if "." in last[1:] else last
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


class OverlayWriter:
    """Writes `<stem>.<method>.png` per scored record into `folder` (`detect --explain`).

    Names are made unique (`-2`, `-3`...) because several inputs can share a file name.
    """

    def __init__(self, folder: str | Path, method: str = "gradcam"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.method = method
        self._used: set[str] = set()
        self.written: list[Path] = []
        self.last_explained = ""

    def _path_for(self, locator: str) -> Path:
        stem = _safe_stem(locator)
        name, i = f"{stem}.{self.method}.png", 1
        while name in self._used:
            i += 1
            name = f"{stem}-{i}.{self.method}.png"
        self._used.add(name)
        return self.folder / name

    def write(self, router, record, prepared) -> Path:
        """The overlay of a scored record, drawn on the pixels the pipeline decoded for it (`prepared`)."""
        exp = explain_prepared(router.detectors[record.model], prepared, record, self.method)
        self.last_explained = describe_explained(exp)
        path = self._path_for(record.path)
        path.write_bytes(exp.overlay_png())
        self.written.append(path)
        return path
