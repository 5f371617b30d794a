"""Degradation curves under perturbations, and their plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def degradation_curves(result: dict[str, Any]) -> dict[str, Any]:
    """From an `evaluate` result with perturbations: per family, the clean point and each strength,
    overall AP and per-generator AP / real accuracy / fake accuracy (the data behind the plots)."""
    clean_gen = {g: m.get("ap") for g, m in result.get("per_generator", {}).items() if not g.startswith("_")}
    curves: dict[str, Any] = {}
    for label, entry in result.get("perturbations", {}).items():
        fam, _, value = label.partition(":")
        c = curves.setdefault(fam, {"values": [], "ap": [], "real_accuracy": [], "fake_accuracy": [], "per_generator": {},
                                    "clean_ap": result["overall"]["ap"], "clean_per_generator": clean_gen})
        c["values"].append(float(value) if value else None)
        for k in ("ap", "real_accuracy", "fake_accuracy"):
            c[k].append(entry.get(k))
        for g, m in entry.get("per_generator", {}).items():
            if not g.startswith("_"):
                c["per_generator"].setdefault(g, []).append(m.get("ap"))
    return curves


def plot_degradation(curves: dict[str, Any], out: str | Path, title: str = "") -> list[str]:
    """One PNG per perturbation family: AP against strength, overall (bold) and per generator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for fam, c in curves.items():
        xs = [v if v is not None else i for i, v in enumerate(c["values"])]
        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        ax.plot(xs, [np.nan if v is None else v for v in c["ap"]], "o-", lw=2.5, color="black", label="all")
        if c["clean_ap"] is not None:
            ax.axhline(c["clean_ap"], ls="--", color="grey", label="clean")
        for g, aps in sorted(c["per_generator"].items()):
            ax.plot(xs, [np.nan if v is None else v for v in aps], ".-", alpha=0.8, label=g)
        ax.set(xlabel=fam, ylabel="AP (fake = positive)", ylim=(0, 1.02), title=f"{title} {fam}".strip())
        if fam.startswith("jpeg") or fam == "webp":
            ax.invert_xaxis()  # stronger compression to the right
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"degradation_{fam}.png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        files.append(name)
    return files


def write_degradation(result: dict[str, Any], out: str | Path) -> list[str]:
    """`degradation.json` + one plot per family under `out` (used by `realjudge evaluate --out`)."""
    curves = degradation_curves(result)
    if not curves:
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "degradation.json").write_text(json.dumps(curves, indent=2, default=float))
    return ["degradation.json"] + plot_degradation(curves, out, result.get("model", ""))
