"""The training loop shared by every detector.

A run folder holds `config.json` (resolved), `versions.json`, `history.json` (one entry per epoch),
`checkpoint.safetensors` + `checkpoint.json` (written atomically after every epoch, so `--resume`
continues after a kill; the weights' file carries the same record, which resume trusts, since a kill
can fall between the two files), `best.safetensors`, and `teacher_logits.safetensors` when distilling.
At the end the best weights are calibrated on the validation split and written as a bundle
(train/export.py).

Started by torchrun (several processes), the same loop runs in every process on its share of each
global batch, through DistributedDataParallel; rank 0 alone validates and writes the run folder
(train/distributed.py; docs/SCALING.md). A checkpoint holds the global state only, so a run resumes
on any number of processes."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..metrics import binary_metrics
from ..models.registry import create_model, get_entry
from ..precision import autocast
from ..preprocess import InputPolicy
from ..runtime import library_versions
from . import distributed
from .averaging import WeightAverage
from .batches import Split, augment_batch, load_split, load_stage1_reals
from .checkpoint import (atomic_write, initial_weights, load_checkpoint, optimizer_tensors, restore_optimizer,
                         save_tensors)
from .config import TrainConfig
from .export import export_bundle
from .schedule import lr_at
from .scoring import predict_logits


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, progress: bool = True):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        entry = get_entry(cfg.arch)
        base = entry.policy.to_json()
        base.update(cfg.policy)
        self.policy = InputPolicy.from_json(base)
        # One process, or this process's place in the job torchrun started (joined here, once).
        self.dist = distributed.init_from_env(cfg.device)
        self.device = distributed.process_device(cfg.device, self.dist.local_rank, self.dist.world)
        self.progress = progress and self.dist.main  # one progress display per job

    # ------------------------------------------------------------------ setup
    def _build(self):
        import torch

        torch.manual_seed(self.cfg.seed)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        model = create_model(self.cfg.arch, **self.cfg.arch_kwargs).to(self.device)
        model = distributed.prepare_model(model.to(memory_format=torch.channels_last), self.dist)
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
        """Train (or continue, `resume`) to the configured epochs; the best weights end in `self.model`.

        Under torchrun every process calls this; rank 0's return value holds the history (the other
        ranks return an empty one and keep their last weights)."""
        with distributed.peers_reported(self.dist):
            return self._fit(resume, split)

    def _fit(self, resume: bool, split: Split | None) -> dict[str, Any]:
        import torch
        from safetensors.torch import load_file
        from tqdm import tqdm

        cfg, main = self.cfg, self.dist.main
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt, ckpt_meta = self.run_dir / "checkpoint.safetensors", self.run_dir / "checkpoint.json"
        if not resume and ckpt_meta.exists():
            raise UsageError(f"{self.run_dir} already holds a run; pass --resume to continue it or choose another --run-dir")
        # Decided once, before any collective: rank 0 cannot write a checkpoint before every rank is here.
        resuming = resume and ckpt_meta.exists()
        distributed.check_batch(self.dist, cfg.batch_size)
        if main:
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_json(), indent=2))
            (self.run_dir / "versions.json").write_text(json.dumps(library_versions(), indent=2))

        if split is None:
            with distributed.main_first(self.dist):  # rank 0 decodes into the cache, the others read it
                split = load_split(cfg, self.policy, self.progress)
        self.split = split
        self.soft = None
        if cfg.distill_from:
            with distributed.main_first(self.dist):  # rank 0 scores the teachers and saves; the others read that
                self.soft = self._soft_targets(split)
        model, opt = self._build()
        if cfg.init_from and not resuming:
            model.load_state_dict(initial_weights(cfg.init_from, cfg.arch))
        history: list[dict[str, Any]] = []
        start_epoch, best_score, bad_epochs = 0, -math.inf, 0
        if resuming:
            tensors, meta = load_checkpoint(ckpt)
            if meta is None:  # a checkpoint written before the weights carried their own record
                meta = json.loads(ckpt_meta.read_text())
            elif main:  # the weights' own record: checkpoint.json is one epoch behind after a kill between the two
                atomic_write(ckpt_meta, json.dumps(meta, default=float).encode())
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            restore_optimizer(opt, {k[4:]: v.to(self.device) for k, v in tensors.items() if k.startswith("opt.")}, meta["optimizer"])
            start_epoch, best_score, bad_epochs, history = meta["epoch"], meta["best_score"], meta["bad_epochs"], meta["history"]
            # A kill may have left history.json torn, or one epoch behind the checkpoint: rewrite it.
            if main:
                atomic_write(self.run_dir / "history.json", json.dumps(history, indent=2).encode())
        ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
        if ema is not None and resuming:
            saved = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            if saved:  # a run that had no average yet starts it from the resumed weights
                ema.model.load_state_dict(saved)
                ema.steps = meta.get("ema_steps", 0)

        if model.two_stage and self.stage1_epochs(model) and start_epoch == 0:
            self._stage1(model)
            model.set_stage(2)

        n = len(split.train.labels)
        steps_per_epoch = max(1, n // cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        stopped_early = False
        step = distributed.training_step(model, self.dist, self.device)  # model.training_loss, or through DDP
        for epoch in range(start_epoch, cfg.epochs):
            rng = np.random.default_rng(cfg.seed * 1000 + epoch)
            torch.manual_seed(distributed.rank_seed(self.dist, cfg.seed * 1000 + epoch))
            order = rng.permutation(n)
            model.train()
            t0 = time.time()
            run_loss = run_correct = seen = 0.0
            # Counted by hand: an iterating bar shows a stale count between its timed refreshes.
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.progress,
                       leave=False, unit="batch", dynamic_ncols=True)
            for b in range(steps_per_epoch):
                rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                loss, logits, y = self._step(step, opt, split.train.pixels, split.train.labels, rows, rng,
                                             lr_at(cfg, epoch * steps_per_epoch + b, total))
                if ema is not None:
                    ema.update(model)
                k = len(y)
                run_loss += float(loss.detach()) * k
                run_correct += float(((logits.detach() > 0).float() == y).sum())
                seen += k
                bar.update(1)
                bar.set_postfix(loss=f"{run_loss / seen:.4f}", acc=f"{run_correct / seen:.4f}")
            bar.close()
            run_loss, run_correct, seen = distributed.all_sum(self.dist, [run_loss, run_correct, seen])
            if main:
                best_score, bad_epochs = self._end_epoch(epoch, model, opt, ema, history, best_score, bad_epochs,
                                                         run_loss / seen, run_correct / seen, t0)
            # Rank 0's decision; the other ranks wait here while it validates and writes.
            if distributed.agree(self.dist, bool(cfg.patience and bad_epochs >= cfg.patience)):
                stopped_early = True
                break

        if main:
            model.load_state_dict(load_file(self.run_dir / "best.safetensors"))
        self.model = model
        return {"history": history if main else [], "stopped_early": stopped_early}

    def _step(self, step, opt, pixels: np.ndarray, labels: np.ndarray, rows: np.ndarray, rng: np.random.Generator,
              lr: float):
        """One optimiser step at learning rate `lr` on this process's share of the global batch `rows`
        (all of it in one process): (loss, logits, labels) of the share."""
        import torch

        cfg = self.cfg
        mine = distributed.share(self.dist, len(rows))
        if self.dist.active:
            batch = augment_batch(pixels[rows[mine]], cfg.augment, rng, positions=mine, total=len(rows))
        else:
            batch = augment_batch(pixels[rows], cfg.augment, rng)
        x = self._tensor(batch)
        y = torch.from_numpy(labels[rows[mine]]).float().to(self.device)
        target = y if self.soft is None else torch.from_numpy(self.soft[rows[mine]]).to(self.device)
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast(cfg.precision, self.device):
            loss, logits = step(x, target)
        loss, logits = loss.float(), logits.float()
        opt.zero_grad(set_to_none=True)
        weight = distributed.loss_weight(self.dist, len(mine), len(rows))
        (loss if weight == 1.0 else loss * weight).backward()
        opt.step()
        return loss, logits, y

    def _soft_targets(self, split: Split) -> np.ndarray:
        """The distillation targets of the training images, in their order: labels blended with the
        teachers' averaged logits. The logits are kept in the run folder (`teacher_logits.safetensors`,
        keyed by the teachers' paths and the images' ids), so a resumed run, and under torchrun every
        rank but the first, reads them instead of scoring the training set again."""
        import hashlib

        import torch
        from safetensors import safe_open

        from ..bundle import load_bundle

        cfg = self.cfg
        path = self.run_dir / "teacher_logits.safetensors"
        key = hashlib.sha256("\n".join([*cfg.distill_from, *split.train.ids]).encode()).hexdigest()
        logits = None
        if path.exists():
            with safe_open(path, "pt") as f:
                if (f.metadata() or {}).get("key") == key:
                    logits = f.get_tensor("logits").numpy()
        if logits is None:
            total = np.zeros(len(split.train.labels), np.float64)
            for teacher in cfg.distill_from:
                model, info = load_bundle(teacher, str(self.device))
                if (info.policy.kind, info.policy.size) != (self.policy.kind, self.policy.size):
                    raise UsageError(f"distill_from: {teacher} reads {info.policy.kind} {info.policy.size} px views, "
                                     f"the student {self.policy.kind} {self.policy.size} px")
                # Soft targets tolerate bfloat16's rounding (~0.1 in a logit); the run's precision applies.
                with autocast(cfg.precision, self.device):
                    total += predict_logits(model.to(memory_format=torch.channels_last), info.policy,
                                            split.train.pixels, self.device)
            logits = (total / len(cfg.distill_from)).astype(np.float32)
            if self.dist.main:
                save_tensors(path, {"logits": torch.from_numpy(logits)}, {"key": key})
        teacher = 1 / (1 + np.exp(-logits / cfg.distill_temperature))
        w = cfg.distill_weight
        return ((1 - w) * split.train.labels + w * teacher).astype(np.float32)

    def _end_epoch(self, epoch, model, opt, ema, history, best_score, bad_epochs, train_loss, train_accuracy, t0):
        """Rank 0's end of an epoch: validation (of the average when there is one), history, best
        weights, checkpoint. Returns (best_score, bad_epochs)."""
        from tqdm import tqdm

        cfg, split = self.cfg, self.split
        judged = ema.model if ema is not None else model
        ckpt, ckpt_meta = self.run_dir / "checkpoint.safetensors", self.run_dir / "checkpoint.json"
        val_logits = predict_logits(judged, self.policy, split.val.pixels, self.device)
        val = binary_metrics(split.val.labels, 1 / (1 + np.exp(-val_logits)), 0.5)
        val_loss = float(np.mean(np.logaddexp(0, val_logits) - split.val.labels * val_logits))
        entry = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
                 "val_loss": val_loss, "val_accuracy": val["accuracy"], "val_auc": val["roc_auc"],
                 "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0}
        history.append(entry)
        score = -val_loss if cfg.monitor == "val_loss" else val["accuracy"]
        if score > best_score:
            best_score, bad_epochs = score, 0
            save_tensors(self.run_dir / "best.safetensors", judged.state_dict())
        else:
            bad_epochs += 1
        if self.progress:
            tqdm.write(f"epoch {epoch + 1}: train loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.4f} | "
                       f"val loss {val_loss:.4f} acc {val['accuracy']:.4f} auc {val['roc_auc'] or float('nan'):.4f} "
                       f"({entry['seconds']:.0f}s)")
        opt_tensors, opt_meta = optimizer_tensors(opt)
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | {f"opt.{k}": v for k, v in opt_tensors.items()}
        if ema is not None:
            tensors |= {f"ema.{k}": v for k, v in ema.model.state_dict().items()}
        record = json.dumps({"epoch": epoch + 1, "best_score": best_score, "bad_epochs": bad_epochs,
                             "history": history, "optimizer": opt_meta,
                             "ema_steps": ema.steps if ema is not None else 0}, default=float)
        # The record goes inside the weights' file (the one resume trusts) and into checkpoint.json.
        save_tensors(ckpt, tensors, {"checkpoint": record})
        atomic_write(ckpt_meta, record.encode())
        atomic_write(self.run_dir / "history.json", json.dumps(history, indent=2).encode())
        return best_score, bad_epochs

    def stage1_epochs(self, model) -> int:
        """Configured stage-1 epochs, or the model's default (`default_stage1_epochs`) when unset."""
        if self.cfg.stage1_epochs is not None:
            return int(self.cfg.stage1_epochs)
        return int(model.default_stage1_epochs) if model.two_stage else 0

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
        with distributed.main_first(self.dist):
            extra = load_stage1_reals(cfg, self.policy, self.progress)
        if len(extra):
            reals = np.concatenate([reals, extra])
        if len(reals) < 2:
            raise UsageError("stage 1 needs at least two real training images")
        model.set_stage(1)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.stage1_lr or cfg.lr, weight_decay=cfg.weight_decay)
        bs = min(cfg.batch_size, len(reals))
        distributed.check_batch(self.dist, bs, "stage 1 batch (batch_size, at most the real images)")
        steps = max(1, len(reals) // bs)
        n_epochs = self.stage1_epochs(model)
        total = steps * n_epochs
        zeros = np.zeros(len(reals), np.int64)  # stage 1 sees reals only
        step = distributed.training_step(model, self.dist, self.device)  # distributed like stage 2
        log = []
        for epoch in range(n_epochs):
            rng = np.random.default_rng(cfg.seed * 1000 + 500 + epoch)
            torch.manual_seed(distributed.rank_seed(self.dist, cfg.seed * 1000 + 500 + epoch))
            order = rng.permutation(len(reals))
            model.train()
            t0, sums = time.time(), {}
            for b in tqdm(range(steps), desc=f"stage 1 epoch {epoch + 1}/{n_epochs}", disable=not self.progress,
                          leave=False, unit="batch", dynamic_ncols=True):
                rows = order[b * bs:(b + 1) * bs]
                lr = (cfg.stage1_lr or cfg.lr) * 0.5 * (1 + math.cos(math.pi * (epoch * steps + b) / total))  # cosine
                loss, _, y = self._step(step, opt, reals, zeros, rows, rng, lr)
                share = len(y) / len(rows)  # 1 in one process: each rank's terms weigh as its rows
                for k, v in ({"loss": float(loss.detach())} | model.loss_terms()).items():
                    sums[k] = sums.get(k, 0.0) + (v / steps if share == 1 else v * share / steps)
            sums = dict(zip(sums, distributed.all_sum(self.dist, list(sums.values()))))
            log.append({"epoch": epoch + 1, "n_real": int(len(reals)), "seconds": time.time() - t0} | sums)
            if self.progress:
                tqdm.write(f"stage 1 epoch {epoch + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in sums.items()))
            if self.dist.main:
                (self.run_dir / "stage1.json").write_text(json.dumps(log, indent=2))
        del step  # stage 2 wraps the model anew; two DDP wrappers must not share its parameters
        if self.dist.main:
            save_tensors(done, model.state_dict())
        distributed.barrier(self.dist)  # stage1.safetensors is whole before any rank goes on

    def export(self, out: str | Path, name: str, extra: dict[str, Any] | None = None) -> Path:
        """Calibrate the best weights on the validation split and write a bundle (train/export.py).
        Under torchrun rank 0 writes it and the other ranks wait for it; all return its path."""
        with distributed.peers_reported(self.dist):
            path = export_bundle(self, out, name, extra) if self.dist.main else Path(out)
            distributed.barrier(self.dist)
        return path
