"""Markdown tables of protocol results."""

from __future__ import annotations

from typing import Any


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def protocol_table(results: dict[str, Any]) -> str:
    """One row per protocol: AP, mean AP over generators, real and fake accuracy."""
    lines = ["| protocol | n train | n test | AP | mean AP (generators) | real acc | fake acc |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['n_train']} | {r['n_test']} | {_f(r['ap'])} | {_f(r['mean_ap'])} | "
                     f"{_f(r['real_accuracy'])} | {_f(r['fake_accuracy'])} |")
    return "\n".join(lines) + "\n"


def generator_table(results: dict[str, Any]) -> str:
    """Per protocol and generator: real accuracy, fake accuracy and AP (that generator's fakes vs all test reals)."""
    lines = ["| protocol | generator | real acc | fake acc | AP |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for g, m in r["per_generator"].items():
            lines.append(f"| {name} | {g} | {_f(m['real_accuracy'])} | {_f(m['fake_accuracy'])} | {_f(m['ap'])} |")
    return "\n".join(lines) + "\n"


def matrix_table(results: dict[str, Any], metric: str = "ap") -> str:
    """Train-on-X (rows) / test-on-Y (columns) matrix of one metric, from protocols with train/test meta."""
    cells = {(r["meta"].get("train"), r["meta"].get("test")): r.get(metric) for r in results.values()
             if "train" in r["meta"] and "test" in r["meta"]}
    rows = sorted({a for a, _ in cells})
    cols = sorted({b for _, b in cells})
    lines = [f"| train \\ test ({metric}) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for a in rows:
        lines.append(f"| {a} | " + " | ".join(_f(cells.get((a, b))) for b in cols) + " |")
    return "\n".join(lines) + "\n"
