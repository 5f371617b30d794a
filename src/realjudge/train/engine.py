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
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..calibrate import calibrate
from ..errors import UsageError
from ..evaluate.metrics import binary_metrics
from ..models.registry import create_model, get_entry
from ..bundle import library_versions
from ..preprocess import InputPolicy
from .config import TrainConfig
from .data import Split, augment_batch, load_split, load_stage1_reals, split_description


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


def initial_weights(path: str, arch: str) -> dict:
    """Weights to start from: a bundle (folder or zip) of the same architecture, or a .safetensors file."""
    from safetensors.torch import load_file

    from ..bundle import load_bundle

    if str(path).endswith(".safetensors"):
        if not Path(path).is_file():
            raise UsageError(f"init_from: {path}: no such file")
        return load_file(path)
    model, info = load_bundle(path)
    if info.arch != arch:
        raise UsageError(f"init_from: {path} is a {info.arch} bundle, not {arch}")
    return model.state_dict()


class WeightAverage:
    """Exponential moving average of a model's state (weights and batch-norm statistics).

    The decay ramps up as (1 + t) / (10 + t) so that the first steps are not dominated by the
    random initialisation.
    """

    def __init__(self, model, decay: float):
        import copy

        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.steps = decay, 0

    def update(self, model) -> None:
        import torch

        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values()):
                if avg.dtype.is_floating_point:
                    avg.lerp_(cur, 1 - d)
                else:
                    avg.copy_(cur)


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
        return self.policy.model_input(batch, self.device)

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
        if cfg.init_from and not (resume and ckpt_meta.exists()):
            model.load_state_dict(initial_weights(cfg.init_from, cfg.arch))
        history: list[dict[str, Any]] = []
        start_epoch, best_score, bad_epochs = 0, -math.inf, 0
        if resume and ckpt_meta.exists():
            meta = json.loads(ckpt_meta.read_text())
            tensors = load_file(ckpt)
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            _restore_optimizer(opt, {k[4:]: v.to(self.device) for k, v in tensors.items() if k.startswith("opt.")}, meta["optimizer"])
            start_epoch, best_score, bad_epochs, history = meta["epoch"], meta["best_score"], meta["bad_epochs"], meta["history"]
        ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
        if ema is not None and resume and ckpt_meta.exists():
            saved = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            if saved:  # a run that had no average yet starts it from the resumed weights
                ema.model.load_state_dict(saved)
                ema.steps = meta.get("ema_steps", 0)

        if hasattr(model, "set_stage"):
            model.set_stage(2)
            if self.stage1_epochs(model) and start_epoch == 0:
                self._stage1(model)
                model.set_stage(2)

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
                if ema is not None:
                    ema.update(model)
                k = len(rows)
                run_loss += float(loss.detach()) * k
                run_correct += float(((logits.detach() > 0).float() == y).sum())
                seen += k
                bar.set_postfix(loss=f"{run_loss / seen:.4f}", acc=f"{run_correct / seen:.4f}")
            bar.close()
            judged = ema.model if ema is not None else model
            val_logits = self.predict_logits(judged, split.val.pixels)
            val = binary_metrics(split.val.labels, 1 / (1 + np.exp(-val_logits)), 0.5)
            val_loss = float(np.mean(np.logaddexp(0, val_logits) - split.val.labels * val_logits))
            entry = {"epoch": epoch + 1, "train_loss": run_loss / seen, "train_accuracy": run_correct / seen,
                     "val_loss": val_loss, "val_accuracy": val["accuracy"], "val_auc": val["roc_auc"],
                     "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0}
            history.append(entry)
            score = -val_loss if cfg.monitor == "val_loss" else val["accuracy"]
            if score > best_score:
                best_score, bad_epochs = score, 0
                _save_tensors(self.run_dir / "best.safetensors", judged.state_dict())
            else:
                bad_epochs += 1
            if self.progress:
                tqdm.write(f"epoch {epoch + 1}: train loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.4f} | "
                           f"val loss {val_loss:.4f} acc {val['accuracy']:.4f} auc {val['roc_auc'] or float('nan'):.4f} "
                           f"({entry['seconds']:.0f}s)")
            opt_tensors, opt_meta = _optimizer_tensors(opt)
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | {f"opt.{k}": v for k, v in opt_tensors.items()}
            if ema is not None:
                tensors |= {f"ema.{k}": v for k, v in ema.model.state_dict().items()}
            _save_tensors(ckpt, tensors)
            _atomic_write(ckpt_meta, json.dumps({"epoch": epoch + 1, "best_score": best_score, "bad_epochs": bad_epochs,
                                                 "history": history, "optimizer": opt_meta,
                                                 "ema_steps": ema.steps if ema is not None else 0}, default=float).encode())
            (self.run_dir / "history.json").write_text(json.dumps(history, indent=2))
            if cfg.patience and bad_epochs >= cfg.patience:
                stopped_early = True
                break

        model.load_state_dict(load_file(self.run_dir / "best.safetensors"))
        self.model = model
        return {"history": history, "stopped_early": stopped_early}

    def stage1_epochs(self, model) -> int:
        """Configured stage-1 epochs, or the model's default (`default_stage1_epochs`) when unset."""
        if self.cfg.stage1_epochs is not None:
            return int(self.cfg.stage1_epochs)
        return int(getattr(model, "default_stage1_epochs", 0)) if hasattr(model, "set_stage") else 0

    def _stage1(self, model) -> None:
        """Self-supervised stage on real images only (two-stage models such as NTF).

        Uses the training split's reals plus `stage1_sources`; writes `stage1.json` (loss terms per
        epoch) and `stage1.safetensors`, which a resumed run loads instead of training stage 1 again.
        """
        import torch
        from safetensors.torch import load_file
        from tqdm import tqdm

        cfg = self.cfg
        done = self.run_dir / "stage1.safetensors"
        if done.exists():
            model.load_state_dict(load_file(done))
            return
        split = self.split
        reals = split.train.pixels[split.train.labels == 0]
        extra = load_stage1_reals(cfg, self.policy, self.progress)
        if len(extra):
            reals = np.concatenate([reals, extra])
        if len(reals) < 2:
            raise UsageError("stage 1 needs at least two real training images")
        model.set_stage(1)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.stage1_lr or cfg.lr, weight_decay=cfg.weight_decay)
        bs = min(cfg.batch_size, len(reals))
        steps = max(1, len(reals) // bs)
        n_epochs = self.stage1_epochs(model)
        total = steps * n_epochs
        log = []
        for epoch in range(n_epochs):
            rng = np.random.default_rng(cfg.seed * 1000 + 500 + epoch)
            torch.manual_seed(cfg.seed * 1000 + 500 + epoch)
            order = rng.permutation(len(reals))
            model.train()
            t0, sums = time.time(), {}
            for b in tqdm(range(steps), desc=f"stage 1 epoch {epoch + 1}/{n_epochs}", disable=not self.progress,
                          leave=False, unit="batch", dynamic_ncols=True):
                rows = order[b * bs:(b + 1) * bs]
                x = self._tensor(augment_batch(reals[rows], cfg.augment, rng))
                for g in opt.param_groups:  # cosine over stage 1
                    g["lr"] = (cfg.stage1_lr or cfg.lr) * 0.5 * (1 + math.cos(math.pi * (epoch * steps + b) / total))
                loss, _ = model.training_loss(x, torch.zeros(len(rows), device=self.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for k, v in ({"loss": float(loss.detach())} | getattr(model, "last_terms", {})).items():
                    sums[k] = sums.get(k, 0.0) + v / steps
            log.append({"epoch": epoch + 1, "n_real": int(len(reals)), "seconds": time.time() - t0} | sums)
            if self.progress:
                tqdm.write(f"stage 1 epoch {epoch + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in sums.items()))
            (self.run_dir / "stage1.json").write_text(json.dumps(log, indent=2))
        _save_tensors(done, model.state_dict())

    def predict_parts(self, model, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """`model.fusion_parts` over many views (N x k), for models whose score is a fitted fusion."""
        import torch

        model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(pixels), batch_size):
                out.append(model.fusion_parts(self._tensor(pixels[i:i + batch_size])).float().cpu().numpy())
        return np.concatenate(out)

    def _per_image(self, values: np.ndarray, labels: np.ndarray, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return per_image(self.policy, values, labels, ids)

    def predict_logits(self, model, pixels: np.ndarray, batch_size: int = 512) -> np.ndarray:
        return predict_logits(model, self.policy, pixels, self.device, batch_size)

    def export(self, out: str | Path, name: str, extra: dict[str, Any] | None = None) -> Path:
        """Calibrate the best weights on the validation split and write a bundle."""
        from ..bundle import write_bundle

        split = self.split
        # Model-card text from the config (intended_input, failure_modes), unless the caller gives its own.
        extra = dict(getattr(self.cfg, "card", None) or {}) | dict(extra or {})
        if hasattr(self.model, "fit_fusion"):
            # Score fusion (e.g. NTF: head logit + proximity to the traces), fitted per image on validation.
            parts, labels = self._per_image(self.predict_parts(self.model, split.val.pixels), split.val.labels, split.val.ids)
            extra["score_fusion"] = {"inputs": ["head_logit", "s_trace"], "weights": self.model.fit_fusion(parts, labels),
                                     "fitted_on": "validation split, per image"}
        logits, labels = self._per_image(self.predict_logits(self.model, split.val.pixels), split.val.labels, split.val.ids)
        cal, metrics = calibrated_metrics(logits, labels, self.cfg.min_real_accuracy, self.cfg.threshold_rule)
        training = {
            "sources": [s.__dict__ for s in self.cfg.sources],
            "source_sha256": source_hashes(self.cfg),
            "n_train": int(len(split.train.labels)),
            "init_from": self.cfg.init_from,
            "n_val": int(len(split.val.labels)),
            "val_split": split_description(self.cfg),
            "history": json.loads((self.run_dir / "history.json").read_text()),
        }
        if (self.run_dir / "stage1.json").exists():
            training["stage1_history"] = json.loads((self.run_dir / "stage1.json").read_text())
        return write_bundle(out, self.model, name=name, arch=self.cfg.arch, arch_kwargs=self.cfg.arch_kwargs,
                            policy=self.policy, calibration=cal, training=training, config=self.cfg.to_json(),
                            val_metrics=metrics, extra=extra)


def calibrated_metrics(logits: np.ndarray, labels: np.ndarray, min_real_accuracy: float | None = None,
                       threshold_rule: str = "balanced"):
    """Calibrate per-image validation logits; the bundle's validation metrics at that calibration."""
    cal = calibrate(logits, labels, min_real_accuracy=min_real_accuracy, threshold_rule=threshold_rule)
    p = cal.probability(logits)
    metrics = binary_metrics(labels, p, cal.threshold)
    lo, hi = cal.uncertain_band
    metrics["uncertain_share"] = float(np.mean((p > lo) & (p < hi)))
    return cal, metrics


def per_image(policy: InputPolicy, values: np.ndarray, labels: np.ndarray, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Crop policies score an image by the mean over its views (as Detector does): group rows by image."""
    if policy.kind != "crop":
        return values, labels
    index: dict[str, int] = {}
    for i in ids:
        index.setdefault(i, len(index))
    g = np.array([index[i] for i in ids])
    counts = np.bincount(g, minlength=len(index)).astype(np.float64)
    if values.ndim == 1:
        agg = np.bincount(g, values, minlength=len(index)) / counts
    else:
        agg = np.stack([np.bincount(g, values[:, j], minlength=len(index)) / counts for j in range(values.shape[1])], 1)
    lab = np.zeros(len(index), labels.dtype)
    lab[g] = labels
    return agg, lab


def predict_logits(model, policy: InputPolicy, pixels: np.ndarray, device="cpu", batch_size: int = 512) -> np.ndarray:
    """Logits of model-sized uint8 views, with the policy's test-time views (shifts, mirror) averaged in
    exactly as Detector averages them at detection."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            variants = policy.test_time_views(pixels[i:i + batch_size])
            logits = sum(model(policy.model_input(v, device)) for v in variants) / len(variants)
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def source_hashes(cfg: TrainConfig) -> dict[str, str | None]:
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
