"""Training configuration: a JSON file plus `key=value` overrides, validated early."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..calibrate import check_threshold_rule
from ..data.samples import compile_group_pattern
from ..errors import SourceError, UsageError
from ..precision import PRECISIONS, canonical


@dataclass
class SourceSpec:
    path: str
    layout: str = "auto"
    label: str | None = None  # force "real" or "fake" for every image of an unlabelled source
    # A regular expression searched in each image's path: images with the same first capture group
    # form one group and land on one side of the validation split (see data.samples.split_key).
    group: str | None = None


@dataclass
class TrainConfig:
    arch: str = "resnet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)  # overrides of the architecture's input policy
    sources: list[SourceSpec] = field(default_factory=list)
    val_fraction: float = 0.1
    subset: int | None = None  # train on a random subset of this many images (searches, quick runs)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | cosine | constant
    warmup_fraction: float = 0.15
    patience: int = 0  # early stopping: epochs without validation improvement; 0 = off
    monitor: str = "val_loss"  # val_loss | val_accuracy
    augment: list[str] = field(default_factory=lambda: ["hflip"])
    # Exponential moving average of the weights (0 = off): validation, the best checkpoint and the
    # exported bundle use the averaged weights, which are smoother than the last step's.
    ema_decay: float = 0.0
    # Start from trained weights (a bundle of the same architecture or a .safetensors file): fine-tuning.
    init_from: str | None = None
    # Calibration: raise the threshold until at least this share of the validation reals is called
    # real (None: the threshold of best balanced accuracy).
    min_real_accuracy: float | None = None
    threshold_rule: str = "balanced"  # or "real_accuracy": the threshold that keeps min_real_accuracy (calibrate.py)
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    threads: int = 0  # torch CPU threads; 0 = torch's default
    name: str = ""
    card: dict[str, str] = field(default_factory=dict)  # model-card text: intended_input, failure_modes
    # Two-stage models (NTF): epochs of self-supervised training on real images only before the
    # supervised epochs, at `stage1_lr` (default: lr); `stage1_sources` add real-only images for it
    # (their validation-split images are left out, like every other source's).
    stage1_epochs: int | None = None  # None: the model's own default (NTF: 3; one-stage models: 0)
    stage1_lr: float | None = None
    stage1_sources: list[SourceSpec] = field(default_factory=list)
    stage1_subset: int | None = None  # at most this many images from `stage1_sources`, drawn at random
    # Crop policies: `train_patches` random patches per training image (0 = the policy's fixed crops);
    # `patch_augment` ("rescale", "upscale", "jpeg") changes each patch's scale / compression as it is cut, alike
    # for both classes, to hide the size and quality differences between them.
    train_patches: int = 0
    patch_augment: list[str] = field(default_factory=list)
    # "bfloat16" ("bf16" in older configs): forward and backward under bfloat16 autocast (batch norm
    # and the loss stay float32); about twice as fast on CPUs with AVX512-BF16 and on recent GPUs.
    # Validation runs in float32.
    precision: str = "float32"
    # Knowledge distillation: bundles whose averaged logits (each with its own test-time views, on
    # the unaugmented training images) become soft targets, blended with the labels as
    # (1 - distill_weight) * label + distill_weight * sigmoid(teacher_logit / distill_temperature).
    distill_from: list[str] = field(default_factory=list)
    distill_weight: float = 0.5
    distill_temperature: float = 1.0

    def __post_init__(self):
        self.sources = [_source_spec(s) for s in self.sources]
        self.stage1_sources = [_source_spec(s) for s in self.stage1_sources]
        self.patch_augment = list(self.patch_augment)
        self.augment = list(self.augment)
        self.distill_from = list(self.distill_from)
        self.precision = canonical(self.precision)
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str):
            if not cond:
                raise UsageError(f"config: {msg}")

        need(0.0 < self.val_fraction < 0.9, f"val_fraction must be in (0, 0.9), got {self.val_fraction}")
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.optimizer in ("adamw", "sgd"), f"optimizer must be adamw or sgd, got {self.optimizer!r}")
        need(self.schedule in ("onecycle", "cosine", "constant"), f"schedule must be onecycle, cosine or constant, got {self.schedule!r}")
        need(self.monitor in ("val_loss", "val_accuracy"), f"monitor must be val_loss or val_accuracy, got {self.monitor!r}")
        need(self.subset is None or self.subset >= 4, f"subset must be >= 4, got {self.subset}")
        need(self.stage1_subset is None or self.stage1_subset >= 1, f"stage1_subset must be >= 1, got {self.stage1_subset}")
        need(self.stage1_epochs is None or self.stage1_epochs >= 0, f"stage1_epochs must be >= 0, got {self.stage1_epochs}")
        need(self.stage1_lr is None or self.stage1_lr > 0, f"stage1_lr must be > 0, got {self.stage1_lr}")
        need(self.min_real_accuracy is None or 0.0 < self.min_real_accuracy <= 1.0,
             f"min_real_accuracy must be in (0, 1], got {self.min_real_accuracy}")
        try:
            check_threshold_rule(self.threshold_rule, self.min_real_accuracy)
        except UsageError as err:
            need(False, str(err))
        need(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        need(self.precision in PRECISIONS, f"precision must be float32 or bfloat16 (or fp32, bf16), got {self.precision!r}")
        need(0.0 <= self.distill_weight <= 1.0, f"distill_weight must be in [0, 1], got {self.distill_weight}")
        need(self.distill_temperature > 0, f"distill_temperature must be > 0, got {self.distill_temperature}")
        need(self.train_patches >= 0, f"train_patches must be >= 0, got {self.train_patches}")
        bad = [a for a in self.patch_augment if a not in ("rescale", "upscale", "jpeg")]
        need(not bad, f"unknown patch augmentation(s) {bad}; known: rescale, upscale, jpeg")
        for s in self.sources + self.stage1_sources:
            need(s.label in (None, "real", "fake"), f"source label must be real or fake, got {s.label!r}")
            if s.group is not None:
                try:
                    compile_group_pattern(s.group)
                except SourceError as err:
                    need(False, f"{s.path}: {err}")
        from ..perturb import AUGMENTATIONS

        unknown = [a for a in self.augment if a not in AUGMENTATIONS]
        need(not unknown, f"unknown augmentation(s) {unknown}; known: {', '.join(AUGMENTATIONS)}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"config: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


def _source_spec(spec: SourceSpec | dict[str, Any]) -> SourceSpec:
    if isinstance(spec, SourceSpec):
        return spec
    known = {f.name for f in fields(SourceSpec)}
    if not isinstance(spec, dict) or "path" not in spec or set(spec) - known:
        raise UsageError(f"config: a source is an object with keys {', '.join(sorted(known))} (path required), got {spec!r}")
    return SourceSpec(**spec)


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """A JSON object from a user's file, or a one-line UsageError naming the file and `what` it is."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} file not found") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a {what} must be a JSON object")
    return data


def load_config(path: str | None, overrides: list[str] | None = None, **explicit: Any) -> TrainConfig:
    """Config file (JSON), then `key=value` overrides (values parsed as JSON when they parse), then flags."""
    data: dict[str, Any] = read_json_object(path, "config") if path else {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"override {item!r} must look like key=value")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        target = data
        parts = key.split(".")
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = parsed
    data.update({k: v for k, v in explicit.items() if v is not None})
    return TrainConfig.from_json(data)
