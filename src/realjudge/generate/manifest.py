"""`OUT/manifest.csv`: one row per image written by `realjudge generate`, real or fake.

The columns start with `path,label` so that the file is also a realjudge CSV manifest: the data
layer's auto-detection picks it up and reads labels, generator and the generation settings from it.

Rows are appended in one `write` per batch on an append-only descriptor and synced, so a crash
leaves at most a torn last line, which the next run cuts off. Images are written before their rows:
a file without a row is completed on resume without regenerating the image; a row without a file
means the image is regenerated and the row is kept (never duplicated). An exclusive lock keeps two
runs from writing one manifest.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..errors import UsageError

COLUMNS = ("path", "label", "split", "class", "class_index", "prompt", "seed", "model", "generator", "revision",
           "scheduler", "steps", "guidance", "size", "filter", "jpeg_quality", "dtype", "origin")

# What an image is: if one of these changes between runs, the files on disk no longer match the
# request. Model location, scheduler name and dtype may change legitimately (a moved folder, another card).
SETTINGS = ("label", "split", "class", "class_index", "prompt", "seed", "steps", "guidance", "size", "filter",
            "jpeg_quality", "origin")

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one run per folder is then the user's duty
    fcntl = None


class Manifest:
    """Open with `with Manifest(out) as m:`; `m.rows` maps a relative path to its row."""

    def __init__(self, out: Path):
        self.path = Path(out) / "manifest.csv"
        self.rows: dict[str, dict[str, str]] = {}
        self._fd: int | None = None

    def __enter__(self) -> Manifest:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._lock()
            self._load()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another run is writing {self.path}; wait for it to finish or use another --out") from None

    def _load(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A torn last row from an interrupted write: drop it; its image (if any) gets its row again.
            keep = data.rfind(b"\n") + 1
            os.truncate(self.path, keep)
            data = data[:keep]
        if not data:
            self._write([list(COLUMNS)])
            return
        reader = csv.reader(io.StringIO(data.decode("utf-8")))
        header = tuple(next(reader))
        if header != COLUMNS:
            raise UsageError(f"{self.path} is not a realjudge generate manifest (columns {','.join(header[:4])}...); "
                             "use another --out")
        for values in reader:
            if len(values) == len(COLUMNS):
                row = dict(zip(COLUMNS, values))
                self.rows[row["path"]] = row

    def check(self, row: dict[str, str]) -> None:
        """Refuse to mix settings: an existing row for this path must describe the same image."""
        old = self.rows.get(row["path"])
        if old is None:
            return
        for key in SETTINGS:
            if old[key] != row[key]:
                raise UsageError(
                    f"{self.path.parent / row['path']} was made with {key}={old[key]!r}, this run asks for "
                    f"{row[key]!r}; keep the earlier settings to resume, or use another --out")

    def append(self, rows: list[dict[str, str]]) -> None:
        new = [r for r in rows if r["path"] not in self.rows]
        if new:
            self._write([[r[c] for c in COLUMNS] for r in new])
            for r in new:
                self.rows[r["path"]] = r

    def _write(self, lines: list[list[str]]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        data = buf.getvalue().encode("utf-8")
        written = os.write(self._fd, data)
        if written != len(data):  # a short write (disk full) must not leave a row silently cut
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")
        os.fsync(self._fd)
