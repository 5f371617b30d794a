"""The search table, as CSV and as Markdown with one numbered row per topology."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

COLUMNS = ("#", "stage", "topology", "params", "macs", "train_s", "accuracy", "precision", "recall", "f1", "roc_auc",
           "rank", "note")


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `rank` (1 = best validation accuracy, ties to fewer parameters) per distinct trained topology."""
    distinct = {r["topology"]: r for r in rows if r.get("accuracy") is not None}
    order = sorted(distinct.values(), key=lambda r: (-r["accuracy"], r["params"]))
    rank = {r["topology"]: i + 1 for i, r in enumerate(order)}
    return [dict(r, rank=rank.get(r["topology"])) for r in rows]


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def _fmt(v: Any, col: str) -> str:
    if v is None:
        return "n/a"
    if col in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        return f"{100 * v:.2f}" if col != "roc_auc" else f"{v:.4f}"
    if col == "train_s":
        return f"{v:.0f}"
    if col in ("params", "macs"):
        return f"{v:,}"
    return str(v)


def markdown(rows: list[dict[str, Any]]) -> str:
    heads = {"#": "#", "stage": "stage", "topology": "conv/dense", "params": "params", "macs": "MACs", "train_s": "train s",
             "accuracy": "acc %", "precision": "prec %", "recall": "recall %", "f1": "F1 %", "roc_auc": "AUC",
             "rank": "rank", "note": "note"}
    lines = ["| " + " | ".join(heads[c] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c), c) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / "table.md"
    md.write_text(markdown(rows))
    return write_csv(rows, folder / "table.csv"), md
