"""The search folder's memory: `results.json`, rewritten atomically after every topology.

A finished topology is never trained again (resumption after a kill, re-runs that only rebuild the
table). The settings that shape results are stored beside them, and a folder made with other
settings is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import UsageError


class ResultStore:
    def __init__(self, folder: str | Path, settings: dict[str, Any]):
        self.path = Path(folder) / "results.json"
        self.settings = settings
        self.results: dict[str, dict[str, Any]] = {}
        self.tpe: list[str] = []  # topology keys of finished TPE trials, in trial order
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except (UnicodeDecodeError, ValueError) as err:
                raise UsageError(f"{self.path}: not a realjudge search store ({type(err).__name__}); "
                                 "use another --out folder") from None
            if data.get("settings") != settings:
                diff = sorted(k for k in set(settings) | set(data.get("settings", {}))
                              if settings.get(k) != data.get("settings", {}).get(k))
                raise UsageError(f"{self.path.parent} holds a search made with other settings ({', '.join(diff)}); "
                                 "use another --out folder or the same settings")
            self.results = data.get("results", {})
            self.tpe = data.get("tpe", [])

    def __contains__(self, key: str) -> bool:
        return key in self.results

    def get(self, key: str) -> dict[str, Any]:
        return self.results[key]

    def put(self, key: str, row: dict[str, Any]) -> None:
        self.results[key] = row
        self.save()

    def add_tpe(self, key: str) -> None:
        self.tpe.append(key)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "results": self.results, "tpe": self.tpe}, indent=1))
        os.replace(tmp, self.path)
