"""Train many topologies under one budget, seed and validation split, and keep the best.

The data are decoded and split once; every topology then trains on exactly the same images for the
same number of epochs, with the same seed, and is scored on the same held-out (content-hash)
validation split at threshold 0.5 (the paper's accuracy is an uncalibrated 0.5 decision).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UsageError
from ..metrics import binary_metrics
from ..models.cifake_cnn import CONV_STAGE, DENSE_UNITS
from .grid import DENSE_LAYERS, Topology, conv_stage, count_macs, count_params, dense_stage
from .store import ResultStore
from .table import rank_rows, write_tables

ARCH = "cifake-cnn"


@dataclass
class SearchSettings:
    sources: list[str]
    out: str
    epochs: int = 2
    subset: int | None = None
    budget: int | None = None  # training images seen per topology; when set, it fixes the epochs
    max_macs: int | None = None  # networks costlier than this are listed but not trained (a CPU budget)
    seed: int = 0
    val_fraction: float = 0.1
    batch_size: int = 128
    lr: float = 2e-3
    device: str = "auto"
    threads: int = 0
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self, topology: Topology | None = None, epochs: int | None = None):
        from ..train.config import TrainConfig

        t = topology or Topology(2, 32, 1, 64)
        return TrainConfig(arch=ARCH, arch_kwargs=t.kwargs(), sources=[{"path": s} for s in self.sources],
                           val_fraction=self.val_fraction, subset=self.subset, epochs=epochs or self.epochs,
                           batch_size=self.batch_size, lr=self.lr, seed=self.seed, device=self.device,
                           threads=self.threads, name=f"cifake-cnn-{t.key.replace('/', '-')}")

    def fingerprint(self, epochs: int) -> dict[str, Any]:
        """What shapes the results (not where or on what device they were computed)."""
        d = asdict(self)
        for k in ("out", "device", "threads", "progress", "budget", "epochs", "max_macs"):
            d.pop(k)
        d["sources"] = [str(Path(s).resolve()) for s in self.sources]
        return d | {"epochs": epochs}


class Search:
    """One search folder: the split loaded once, results cached by topology."""

    def __init__(self, settings: SearchSettings, log: Callable[[str], None] = print):
        from ..models.registry import get_entry
        from ..train.batches import load_split

        self.settings = settings
        self.out = Path(settings.out)
        self.log = log
        self.policy = get_entry(ARCH).policy
        self.split = load_split(settings.config(), self.policy, settings.progress)
        n_train = len(self.split.train.labels)
        self.epochs = max(1, round(settings.budget / n_train)) if settings.budget else settings.epochs
        self.store = ResultStore(self.out, settings.fingerprint(self.epochs))
        self.log(f"data: {n_train} training, {len(self.split.val.labels)} validation images; "
                 f"{self.epochs} epoch(s) per topology ({n_train * self.epochs} images seen)")

    def run_dir(self, t: Topology) -> Path:
        return self.out / "runs" / t.key.replace("/", "_")

    def train(self, t: Topology) -> dict[str, Any]:
        """Train (or recall) one topology; returns its result row."""
        from ..train.engine import Trainer
        from ..train.scoring import predict_logits

        if t.key in self.store:
            return self.store.get(t.key)
        cap = self.settings.max_macs
        if cap is not None and count_macs(t) > cap:
            # Listed with its cost so the table stays complete; not stored, so a later run with a
            # higher cap (or a GPU) trains it in the same folder.
            return {"topology": t.key, **t.kwargs(), "params": count_params(t), "macs": count_macs(t), "train_s": None,
                    "epochs": self.epochs, "accuracy": None, "precision": None, "recall": None, "f1": None,
                    "roc_auc": None, "confusion_matrix": None, "skipped": f"not trained: over the {cap:,}-MAC cap"}
        run = self.run_dir(t)
        resumed = (run / "checkpoint.json").exists()
        trainer = Trainer(self.settings.config(t, self.epochs), run, progress=self.settings.progress)
        t0 = time.perf_counter()
        result = trainer.fit(resume=True, split=self.split)
        seconds = time.perf_counter() - t0
        logits = predict_logits(trainer.model, trainer.policy, self.split.val.pixels, trainer.device)
        m = binary_metrics(self.split.val.labels, 1 / (1 + np.exp(-logits)), 0.5)
        row = {"topology": t.key, **t.kwargs(), "params": count_params(t), "macs": count_macs(t),
               "train_s": seconds, "epochs": self.epochs, "resumed": resumed,
               "images_per_s": len(self.split.train.labels) * len(result["history"]) / seconds if not resumed else None,
               **{k: m[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix")}}
        self.store.put(t.key, row)
        return row

    def run(self, topologies: list[Topology], stage: str, start: int = 1) -> list[dict[str, Any]]:
        rows, seen = [], {}
        for i, t in enumerate(topologies, start):
            cached = t.key in self.store
            row = dict(self.train(t), stage=stage, **{"#": i})
            row["note"] = f"same network as #{seen[t.key]}" if t.key in seen else row.pop("skipped", "")
            seen.setdefault(t.key, i)
            if row["accuracy"] is None:
                self.log(f"[{i}] {stage:<6} {t.key:<14} {row['note']}")
            else:
                self.log(f"[{i}] {stage:<6} {t.key:<14} acc {row['accuracy']:.4f}  f1 {row['f1']:.4f}  "
                         f"{row['train_s']:.0f}s{'  (cached)' if cached else ''}")
            rows.append(row)
        return rows


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Highest validation accuracy; ties go to the smaller network. Untrained (capped) rows never win."""
    trained = [r for r in rows if r.get("accuracy") is not None]
    if not trained:
        raise UsageError("no topology was trained (all over --max-macs?)")
    return min(trained, key=lambda r: (-r["accuracy"], r["params"]))


def paper_grid(search: Search, conv=CONV_STAGE, layers=DENSE_LAYERS, units=DENSE_UNITS,
               dense_base: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """The paper's two stages: 12 convolution stages, then 24 dense heads on the best of them.

    `dense_base` (n_conv, filters) puts the dense stage on a given convolution stage instead, e.g.
    the paper's own 2 x 32 when the winner's dense stage is too costly for the hardware at hand.
    """
    stage1 = search.run(conv_stage(conv), "conv")
    best = best_row(stage1)
    search.log(f"best convolution stage: {best['n_conv']} x {best['filters']} filters")
    n_conv, filters = dense_base or (best["n_conv"], best["filters"])
    if dense_base:
        search.log(f"dense stage on {n_conv} x {filters} filters, as requested")
    base = Topology(n_conv, filters, 1, 64)
    stage2 = search.run(dense_stage(base, layers, units), "dense", start=len(stage1) + 1)
    # The dense stage repeats the stage-1 winner (1 x 64): the note points at the earlier row.
    first = {r["topology"]: r["#"] for r in stage1}
    for r in stage2:
        if r["topology"] in first and not r["note"]:
            r["note"] = f"same network as #{first[r['topology']]}"
    return stage1 + stage2


def export_best(search: Search, row: dict[str, Any], name: str = "cifake-cnn-search") -> Path:
    """Write the winner as a calibrated bundle (`OUT/best`) from its saved best weights."""
    from safetensors.torch import load_file

    from ..models.registry import create_model
    from ..train.engine import Trainer

    t = Topology(row["n_conv"], row["filters"], row["n_dense"], row["units"])
    trainer = Trainer(search.settings.config(t, search.epochs), search.run_dir(t), progress=False)
    model = create_model(ARCH, **t.kwargs()).to(trainer.device)
    model.load_state_dict(load_file(search.run_dir(t) / "best.safetensors"))
    trainer.model, trainer.split = model, search.split
    return trainer.export(search.out / "best", name, extra={"search": {"topology": t.key, "row": row}})


def run_search(settings: SearchSettings, grid: str = "paper", topologies: list[Topology] | None = None,
               strategy: str = "grid", trials: int = 20, log: Callable[[str], None] = print,
               export: bool = True, dense_base: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run a search and write `results.json`, `table.csv`, `table.md` and the best bundle into `settings.out`."""
    if strategy not in ("grid", "tpe"):
        raise UsageError(f"unknown strategy {strategy!r}; known: grid, tpe")
    if strategy == "grid" and grid == "custom" and not topologies:
        raise UsageError("--grid custom needs at least one --topology NCONVxFILTERS/NDENSExUNITS")
    if grid not in ("paper", "custom"):
        raise UsageError(f"unknown grid {grid!r}; known: paper, custom")
    search = Search(settings, log)
    if strategy == "tpe":
        from .tpe import run_tpe

        rows = run_tpe(search, trials)
    elif grid == "paper":
        rows = paper_grid(search, dense_base=dense_base)
    else:
        rows = search.run(list(topologies or []), "custom")
    rows = rank_rows(rows)
    csv_path, md_path = write_tables(rows, search.out)
    best = best_row(rows)
    bundle = export_best(search, best) if export else None
    summary = {"best": best, "rows": rows, "epochs": search.epochs, "table_csv": str(csv_path),
               "table_md": str(md_path), "bundle": str(bundle) if bundle else None,
               "n_train": int(len(search.split.train.labels)), "n_val": int(len(search.split.val.labels))}
    (search.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    log(f"best: {best['topology']} accuracy {best['accuracy']:.4f}; table {md_path}" + (f"; bundle {bundle}" if bundle else ""))
    return summary
