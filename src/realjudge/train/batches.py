"""Training data: labelled samples -> decoded arrays, split by content hash, batches with augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.cache import ArraySet, load_arrays
from ..data.layouts import open_source, require_labels
from ..data.samples import Sample, assign_groups, is_validation, split_key
from ..errors import SourceError
from ..preprocess import InputPolicy, shift_views
from .config import TrainConfig


def collect_samples(cfg: TrainConfig) -> list[Sample]:
    if not cfg.sources:
        raise SourceError("no training data: give at least one source")
    samples: list[Sample] = []
    for spec in cfg.sources:
        samples += _open_spec(spec, None if spec.label is None else int(spec.label == "fake"))
    require_labels(samples, "training data")
    labels = {s.label for s in samples}
    if labels != {0, 1}:
        raise SourceError(f"training data needs real and fake images; found only {'fake' if 1 in labels else 'real'}")
    return samples


def _open_spec(spec, label: int | None) -> list[Sample]:
    """A configured source's samples, `label` forced when given, grouped by the source's pattern."""
    samples = open_source(spec.path, spec.layout, label=label)
    if spec.group:
        assign_groups(samples, spec.group)
    return samples


@dataclass
class Split:
    train: ArraySet
    val: ArraySet


def split_description(cfg: TrainConfig) -> str:
    """How the validation split was drawn, as a bundle records it."""
    groups = [s.group for s in cfg.sources if s.group]
    return f"sha256 of bytes, fraction {cfg.val_fraction}" + (
        f"; images grouped by {', '.join(repr(g) for g in groups)} share one side" if groups else "")


def split_arrays(data: ArraySet, val_fraction: float, subset: int | None, seed: int) -> Split:
    val = np.array([is_validation(split_key(s), val_fraction) for s in data.samples], bool)
    train_rows = np.flatnonzero(~val)
    if subset is not None and subset < len(train_rows):
        train_rows = np.sort(np.random.default_rng(seed).choice(train_rows, subset, replace=False))
    val_rows = np.flatnonzero(val)
    if len(val_rows) == 0 or len(train_rows) == 0:
        raise SourceError(f"too few images ({len(data.ids)}) for a validation split of {val_fraction}")
    return Split(data.subset(train_rows), data.subset(val_rows))


def load_split(cfg: TrainConfig, policy: InputPolicy, progress: bool) -> Split:
    data = load_views(collect_samples(cfg), policy, cfg, progress)
    return split_arrays(data, cfg.val_fraction, cfg.subset, cfg.seed)


def load_views(samples: list[Sample], policy: InputPolicy, cfg: TrainConfig, progress: bool,
               val_fraction: float | None = None, train_side: bool = True) -> ArraySet:
    """The one resize-or-crop rule for training data: a resize policy loads whole images resized to
    the model's size (cached); a crop policy loads patches (`load_patches`). `val_fraction` says which
    samples count as validation for the patch sampling (default: the config's); `train_side=False`
    loads every sample as detection will see it (the policy's own views, no random patches)."""
    if policy.kind == "resize":
        return load_arrays(samples, policy.size, policy.filter, progress=progress)
    if not train_side:
        return load_patches(samples, policy, progress, 0, 0.0, (), cfg.seed)
    vf = cfg.val_fraction if val_fraction is None else val_fraction
    return load_patches(samples, policy, progress, cfg.train_patches, vf, cfg.patch_augment, cfg.seed)


def load_stage1_reals(cfg: TrainConfig, policy: InputPolicy, progress: bool) -> np.ndarray:
    """Extra real images for stage 1 (`cfg.stage1_sources`), training-side only, as model-sized views."""
    if not cfg.stage1_sources:
        return np.zeros((0, policy.size, policy.size, 3), np.uint8)
    samples: list[Sample] = []
    for spec in cfg.stage1_sources:
        if spec.label == "fake":
            raise SourceError(f"{spec.path}: stage 1 learns from real images only; a source labelled fake cannot join it")
        found = _open_spec(spec, 0 if spec.label == "real" else None)
        # A labelled source (e.g. CIFAKE) gives its reals only; an unlabelled folder counts as real photographs.
        samples += [s for s in found if s.label in (0, None)]
    for s in samples:
        s.label = 0
    if cfg.stage1_subset is not None and len(samples) > cfg.stage1_subset:
        rows = np.random.default_rng(cfg.seed).choice(len(samples), cfg.stage1_subset, replace=False)
        samples = [samples[i] for i in np.sort(rows)]
    data = load_views(samples, policy, cfg, progress)
    keep = np.array([not is_validation(split_key(s), cfg.val_fraction) for s in data.samples], bool)
    return data.pixels[keep]


def load_patches(samples: list[Sample], policy: InputPolicy, progress: bool, train_patches: int = 0,
                 val_fraction: float = 0.1, patch_augment: list[str] | tuple = (), seed: int = 0) -> ArraySet:
    """Native-resolution training data: every view of the bundle's crop policy, stored as patches.

    Each patch keeps its image's content id, so the split never separates patches of one image.
    With `train_patches` > 0, a training-side image gives that many random patches instead (seeded by
    its content id), optionally rescaled / re-compressed as they are cut (`patch_augment`); the
    validation side always gets exactly the views that detection will use.
    """
    from ..data.decode import decode_bytes
    from ..data.samples import content_id, iter_sample_bytes

    patches, labels, ids, kept, errors = [], [], [], [], []
    for s, blob in iter_sample_bytes(samples):
        if not isinstance(blob, bytes):
            errors.append(str(blob))
            continue
        cid = content_id(blob)
        s.learn_id(cid)
        try:
            pixels = decode_bytes(blob, s.locator).pixels
            if train_patches and not is_validation(split_key(s), val_fraction):
                views = random_patches(pixels, policy, train_patches, patch_augment,
                                       np.random.default_rng([seed, int(cid[:12], 16)]))
            else:
                views, _ = policy.views(pixels)
        except Exception as err:  # DecodeError, or a policy error on an odd image
            errors.append(str(err))
            continue
        for v in views:
            patches.append(v)
            labels.append(s.label)
            ids.append(cid)
            kept.append(s)
    if not patches:
        raise SourceError("no decodable training images")
    return ArraySet(np.stack(patches), np.array(labels, np.int64), ids, kept, errors)


def random_patches(pixels: np.ndarray, policy: InputPolicy, n: int, augment, rng: np.random.Generator) -> list[np.ndarray]:
    """`n` random `policy.size` patches of one image, never upsampled (small images are padded first).

    "upscale": a fifth of the patches come from the image enlarged by a random factor in (1, 2]
    (cut a smaller square, enlarge it bicubically), so that interpolation, which every enlarged
    photograph shows, is not taken for a generator's upsampling; "rescale": half of the other
    patches come from the image downscaled by a random factor in [0.5, 1) (cut a larger square,
    shrink it to the patch), so native size is not a cue; "jpeg": 70% of the patches are re-encoded
    at a random quality in [60, 95]. All alike for every class.
    """
    from PIL import Image

    from .. import perturb

    s = policy.size
    pixels, _ = policy.frame(pixels)  # padded to the patch size the way detection pads it
    h, w = pixels.shape[:2]
    out = []
    for _ in range(n):
        side = s
        if "upscale" in augment and rng.random() < 0.2:
            side = max(8, int(round(s / rng.uniform(1.0, 2.0))))
        elif "rescale" in augment and rng.random() < 0.5:
            side = min(h, w, int(round(s / rng.uniform(0.5, 1.0))))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = pixels[y:y + side, x:x + side]
        if side != s:
            patch = np.asarray(Image.fromarray(patch).resize((s, s), Image.Resampling.BICUBIC), dtype=np.uint8)
        if "jpeg" in augment and rng.random() < 0.7:
            patch = perturb.jpeg(patch, int(rng.integers(60, 96)))
        out.append(np.ascontiguousarray(patch))
    return out


def augment_batch(batch: np.ndarray, names: list[str], rng: np.random.Generator,
                  positions: np.ndarray | None = None, total: int | None = None) -> np.ndarray:
    """Random training augmentation, applied the same way whatever the label.

    `positions` (distributed training): `batch` holds only these rows (ascending) of a global batch
    of `total` rows. The random draws are made for all `total` rows, in the order one process makes
    them, so `rng` ends where it would and each kept row is augmented exactly as it would be in the
    whole batch; only the kept rows are worked on and returned."""
    from .. import perturb

    total = len(batch) if total is None else total
    positions = np.arange(total) if positions is None else np.asarray(positions)
    where = np.full(total, -1)  # global row -> row of `batch` (-1: another rank's)
    where[positions] = np.arange(len(positions))
    out = batch.copy() if names else batch
    if "hflip" in names:
        flip = (rng.random(total) < 0.5)[positions]
        out[flip] = out[flip, :, ::-1]
    if "shift" in names:
        out = _shift(out, rng, positions, total)
    if "cutout" in names:
        _cutout(out, rng, where)
    heavy = [n for n in names if n not in ("hflip", "shift", "cutout")]
    if heavy:
        h, w = out.shape[1:3]
        for i in range(total):
            j = where[i]
            img = out[j] if j >= 0 else None  # another rank's row: the draws only
            if "blur" in heavy and rng.random() < 0.2:
                sigma = rng.uniform(0.2, 1.5)
                img = None if img is None else perturb.blur(img, sigma)
            if "resize" in heavy and rng.random() < 0.2:
                factor = rng.uniform(0.5, 0.95)
                img = None if img is None else _fit(perturb.downscale(img, factor), h, w)
            if "jpeg" in heavy and rng.random() < 0.5:
                quality = int(rng.integers(50, 96))
                img = None if img is None else perturb.jpeg(img, quality)
            if "noise" in heavy and rng.random() < 0.1:
                sigma, seed = rng.uniform(1, 4), int(rng.integers(1 << 31))
                img = None if img is None else perturb.noise(img, sigma, seed)
            if img is not None:
                out[j] = img
    return out


def _shift(batch: np.ndarray, rng: np.random.Generator, positions: np.ndarray, total: int) -> np.ndarray:
    """Translate each image by up to 1/8 of its side, filling with its reflection: pixels are only moved."""
    h, w = batch.shape[1:3]
    m = max(1, min(h, w) // 8)
    dy, dx = rng.integers(-m, m + 1, total)[positions], rng.integers(-m, m + 1, total)[positions]
    # Negated offsets give exactly the crops of a reflect-padded batch this used to cut: seeded runs repeat.
    return np.stack([shift_views(batch[i:i + 1], -int(dx[i]), -int(dy[i]))[0] for i in range(len(batch))])


def _cutout(batch: np.ndarray, rng: np.random.Generator, where: np.ndarray) -> None:
    """Blank one random square (1/4 to 3/8 of the side) in half of the images with the image's mean colour."""
    h, w = batch.shape[1:3]
    for i in np.flatnonzero(rng.random(len(where)) < 0.5):
        side = int(rng.integers(max(1, min(h, w) // 4), max(2, 3 * min(h, w) // 8) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        j = where[i]
        if j >= 0:
            batch[j, y:y + side, x:x + side] = batch[j].reshape(-1, batch.shape[3]).mean(0).astype(batch.dtype)


def _fit(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8)
