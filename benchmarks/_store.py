"""The JSON files a report script keeps its measurements in (one file a step, under its run folder)."""

from __future__ import annotations

import json
from pathlib import Path


def save(out: Path, name: str, data) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=float))


def load(out: Path, name: str):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None
