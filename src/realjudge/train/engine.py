"""The training loop shared by every detector.

A run folder holds `config.json` (resolved), `versions.json`, `history.json` (one entry per epoch),
`checkpoint.safetensors` + `checkpoint.json` (written atomically after every epoch, so `--resume`
continues after a kill) and `best.safetensors`. At the end the best weights are calibrated on the
validation split and written as a bundle.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..calibrate import calibrate
from ..errors import UsageError
from ..evaluate.metrics import binary_metrics
from ..models.registry import create_model, get_entry
from ..preprocess import InputPolicy
from .config import TrainConfig
from .data import Split, augment_batch, load_split


def library_versions() -> dict[str, str]:
    import PIL
    import safetensors
    import torch

    from .. import __version__

    return {"realjudge": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "safetensors": safetensors.__version__}


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda requested but no GPU is available")
    return dev


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate at `step` of `total`: one-cycle (linear warm-up, cosine down), cosine or constant."""
    if cfg.schedule == "constant" or total <= 1:
        return cfg.lr
    frac = step / total
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * frac))
    warm = max(cfg.warmup_fraction, 1e-6)
    if frac < warm:
        return cfg.lr * (0.04 + 0.96 * frac / warm)
    return cfg.lr * (0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm)))) + 1e-6


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_tensors(path: Path, tensors: dict) -> None:
    from safetensors.torch import save

    _atomic_write(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))


def _optimizer_tensors(opt) -> tuple[dict, dict]:
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            if hasattr(v, "shape"):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _restore_optimizer(opt, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, progress: bool = True):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        entry = get_entry(cfg.arch)
        base = entry.policy.to_json()
        base.update(cfg.policy)
        self.policy = InputPolicy.from_json(base)
        self.device = resolve_device(cfg.device)

    # ------------------------------------------------------------------ setup
    def _build(self):
        import torch

        torch.manual_seed(self.cfg.seed)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        model = create_model(self.cfg.arch, **self.cfg.arch_kwargs).to(self.device)
        model = model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        if self.cfg.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=self.cfg.lr, momentum=0.9, nesterov=True, weight_decay=self.cfg.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        return model, opt

    def _tensor(self, batch: np.ndarray):
        import torch

        return self.policy.normalise(batch).to(self.device).contiguous(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False, split: Split | None = None) -> dict[str, Any]:
        import torch
        from safetensors.torch import load_file
        from tqdm import tqdm

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt, ckpt_meta = self.run_dir / "checkpoint.safetensors", self.run_dir / "checkpoint.json"
        if not resume and ckpt_meta.exists():
            raise UsageError(f"{self.run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
        (self.run_dir / "config.json").write_text(json.dumps(cfg.to_json(), indent=2))
        (self.run_dir / "versions.json").write_text(json.dumps(library_versions(), indent=2))

        split = split or load_split(cfg, self.policy, self.progress)
        self.split = split
        model, opt = self._build()
        history: list[dict[str, Any]] = []
        start_epoch, best_score, bad_epochs = 0, -math.inf, 0
        if resume and ckpt_meta.exists():
            meta = json.loads(ckpt_meta.read_text())
            tensors = load_file(ckpt)
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            _restore_optimizer(opt, {k[4:]: v.to(self.device) for k, v in tensors.items() if k.startswith("opt.")}, meta["optimizer"])
            start_epoch, best_score, bad_epochs, history = meta["epoch"], meta["best_score"], meta["bad_epochs"], meta["history"]

        n = len(split.train.labels)
        steps_per_epoch = max(1, n // cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        loss_fn = getattr(model, "training_loss", None)
        stopped_early = False
        for epoch in range(start_epoch, cfg.epochs):
            rng = np.random.default_rng(cfg.seed * 1000 + epoch)
            torch.manual_seed(cfg.seed * 1000 + epoch)
            order = rng.permutation(n)
            model.train()
            t0 = time.time()
            run_loss = run_correct = seen = 0.0
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.progress,
                       leave=False, unit="batch", dynamic_ncols=True)
            for b in bar:
                rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                x = self._tensor(augment_batch(split.train.pixels[rows], cfg.augment, rng))
                y = torch.from_numpy(split.train.labels[rows]).float().to(self.device)
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, epoch * steps_per_epoch + b, total)
                if loss_fn is not None:
                    loss, logits = loss_fn(x, y)
                else:
                    logits = model(x)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                k = len(rows)
                run_loss += float(loss.detach()) * k
                run_correct += float(((logits.detach() > 0).float() == y).sum())
                seen += k
                bar.set_postfix(loss=f"{run_loss / seen:.4f}", acc=f"{run_correct / seen:.4f}")
            bar.close()
            val_logits = self.predict_logits(model, split.val.pixels)
            val = binary_metrics(split.val.labels, 1 / (1 + np.exp(-val_logits)), 0.5)
            val_loss = float(np.mean(np.logaddexp(0, val_logits) - split.val.labels * val_logits))
            entry = {"epoch": epoch + 1, "train_loss": run_loss / seen, "train_accuracy": run_correct / seen,
                     "val_loss": val_loss, "val_accuracy": val["accuracy"], "val_auc": val["roc_auc"],
                     "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0}
            history.append(entry)
            score = -val_loss if cfg.monitor == "val_loss" else val["accuracy"]
            if score > best_score:
                best_score, bad_epochs = score, 0
                _save_tensors(self.run_dir / "best.safetensors", model.state_dict())
            else:
                bad_epochs += 1
            if self.progress:
                tqdm.write(f"epoch {epoch + 1}: train loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.4f} | "
                           f"val loss {val_loss:.4f} acc {val['accuracy']:.4f} auc {val['roc_auc'] or float('nan'):.4f} "
                           f"({entry['seconds']:.0f}s)")
            opt_tensors, opt_meta = _optimizer_tensors(opt)
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | {f"opt.{k}": v for k, v in opt_tensors.items()}
            _save_tensors(ckpt, tensors)
            _atomic_write(ckpt_meta, json.dumps({"epoch": epoch + 1, "best_score": best_score, "bad_epochs": bad_epochs,
                                                 "history": history, "optimizer": opt_meta}, default=float).encode())
            (self.run_dir / "history.json").write_text(json.dumps(history, indent=2))
            if cfg.patience and bad_epochs >= cfg.patience:
                stopped_early = True
                break

        model.load_state_dict(load_file(self.run_dir / "best.safetensors"))
        self.model = model
        return {"history": history, "stopped_early": stopped_early}

    def predict_logits(self, model, pixels: np.ndarray, batch_size: int = 512) -> np.ndarray:
        import torch

        model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(pixels), batch_size):
                out.append(model(self._tensor(pixels[i:i + batch_size])).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def export(self, out: str | Path, name: str, extra: dict[str, Any] | None = None) -> Path:
        """Calibrate the best weights on the validation split and write a bundle."""
        from ..bundle import write_bundle

        split = self.split
        logits = self.predict_logits(self.model, split.val.pixels)
        cal = calibrate(logits, split.val.labels)
        p = cal.probability(logits)
        metrics = binary_metrics(split.val.labels, p, cal.threshold)
        lo, hi = cal.uncertain_band
        metrics["uncertain_share"] = float(np.mean((p > lo) & (p < hi)))
        training = {
            "sources": [s.__dict__ for s in self.cfg.sources],
            "source_sha256": _source_hashes(self.cfg),
            "n_train": int(len(split.train.labels)),
            "n_val": int(len(split.val.labels)),
            "val_split": f"sha256 of bytes, fraction {self.cfg.val_fraction}",
            "history": json.loads((self.run_dir / "history.json").read_text()),
        }
        return write_bundle(out, self.model, name=name, arch=self.cfg.arch, arch_kwargs=self.cfg.arch_kwargs,
                            policy=self.policy, calibration=cal, training=training, config=self.cfg.to_json(),
                            val_metrics=metrics, extra=extra or {})


def _source_hashes(cfg: TrainConfig) -> dict[str, str | None]:
    import hashlib

    out: dict[str, str | None] = {}
    for s in cfg.sources:
        p = Path(s.path)
        if p.is_file() and p.stat().st_size < 2 * 1024**3:
            h = hashlib.sha256()
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[s.path] = h.hexdigest()
        else:
            out[s.path] = None
    return out
