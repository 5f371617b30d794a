"""Evaluation reports: metrics JSON, a Markdown page and figures (ROC, PR, confusion matrix)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


METRIC_COLUMNS = ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "ap", "real_accuracy", "fake_accuracy")


def metrics_table(rows: dict[str, dict[str, Any]], first: str = "set") -> str:
    head = f"| {first} | " + " | ".join(METRIC_COLUMNS) + " |\n|" + " --- |" * (len(METRIC_COLUMNS) + 1) + "\n"
    return head + "".join(f"| {k} | " + " | ".join(_fmt(m.get(c)) for c in METRIC_COLUMNS) + " |\n"
                          for k, m in rows.items() if isinstance(m, dict))


def plot_curves(labels: np.ndarray, p: np.ndarray, cm: list[list[int]], out: Path, title: str) -> dict[str, str]:
    """ROC, PR and confusion-matrix PNGs; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    files = {}
    if 0 < np.sum(labels) < len(labels):
        fpr, tpr, _ = roc_curve(labels, p)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate", title=f"ROC: {title}")
        fig.tight_layout()
        fig.savefig(out / "roc.png", dpi=100)
        plt.close(fig)
        prec, rec, _ = precision_recall_curve(labels, p)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(rec, prec)
        ax.set(xlabel="recall (fake)", ylabel="precision (fake)", title=f"PR: {title}", ylim=(0, 1.02))
        fig.tight_layout()
        fig.savefig(out / "pr.png", dpi=100)
        plt.close(fig)
        files.update(roc="roc.png", pr="pr.png")
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(np.array(cm), cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i][j]), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
           xlabel="verdict", ylabel="truth", title="confusion matrix")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100)
    plt.close(fig)
    files["confusion"] = "confusion.png"
    return files


def write_report(result: dict[str, Any], labels: np.ndarray, p: np.ndarray, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    overall = result["overall"]
    figs = plot_curves(labels, p, overall["confusion_matrix"], out, result["model"])
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    lines = [f"# Evaluation of `{result['model']}`", "",
             f"Data: {', '.join(result['sources'])}. Threshold {_thr(overall)} (fake = positive). "
             f"{result.get('n_errors', 0)} unreadable file(s) skipped.", "", "## Overall", "",
             metrics_table({"all": overall}),
             f"Confusion matrix [[TN, FP], [FN, TP]]: {overall['confusion_matrix']}", ""]
    for key, title in (("per_source", "source"), ("per_generator", "generator")):
        if result.get(key):
            lines += [f"## Per {title}", "", metrics_table(result[key], title)]
            if "_mean_ap" in result[key]:
                lines.append(f"Mean AP over generators: {_fmt(result[key]['_mean_ap'])}\n")
    if result.get("perturbations"):
        lines += ["## Perturbations (applied alike to real and fake)", "", metrics_table(result["perturbations"], "perturbation")]
    lines += [f"![{k}]({v})" for k, v in figs.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def _thr(overall: dict) -> str:
    t = overall.get("threshold")
    return "per model (each detector's own)" if t is None else f"{t:.4f}"
