"""Input policies: how decoded pixels become model input. Stored in every bundle, never hard-coded.

Two policies:
- `resize`: the whole image to `size` x `size` with a named filter (32x32 CIFAKE-style models);
  the record says so, because resizing erases high-frequency generator traces.
- `crop`: native resolution. Up to `crops` patches of `size` x `size` at fixed positions, scored
  separately and aggregated by the mean of their logits; an image smaller than a patch is padded
  (reflect), never upsampled. Up to 5 crops: the centre, then the four corners. More: an evenly
  spaced grid of g x g patches (g = floor(sqrt(crops))) spanning the image, so that a large image is
  judged on evidence from all over it rather than five spots.
Either policy may add test-time views, scored with the others and averaged into the same logit:
- `shifts`: each view is also scored translated by each (dx, dy) pixel offset, the edge filled by
  reflection (pixels are moved, never resampled; useful for models trained with shift augmentation);
- `mirror`: every view so far is also scored mirrored left-right (a mirror keeps an 8x8 JPEG grid
  aligned when the width is a multiple of 8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from .errors import UsageError

# Test-time shifts of one pixel in the four directions (pixels moved, edge reflected: nothing resampled).
ONE_PX_SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def resize_to(pixels: np.ndarray, size: int, filter_name: str) -> np.ndarray:
    if filter_name not in FILTERS:
        raise UsageError(f"unknown resize filter {filter_name!r}; known: {', '.join(FILTERS)}")
    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), FILTERS[filter_name]), dtype=np.uint8)


MAX_CROPS = 64


@dataclass(frozen=True)
class InputPolicy:
    kind: str = "resize"  # "resize" | "crop"
    size: int = 32
    filter: str = "bicubic"  # resize only
    crops: int = 5  # crop only
    pad: str = "reflect"  # crop only
    mirror: bool = False  # also score each view mirrored left-right (test-time augmentation)
    shifts: tuple[tuple[int, int], ...] = ()  # also score each view translated by these (dx, dy) offsets
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("resize", "crop"):
            raise UsageError(f"input policy kind must be 'resize' or 'crop', got {self.kind!r}")
        if self.size < 8:
            raise UsageError(f"input size must be at least 8, got {self.size}")
        if self.kind == "resize" and self.filter not in FILTERS:
            raise UsageError(f"unknown resize filter {self.filter!r}; known: {', '.join(FILTERS)}")
        if self.kind == "crop" and not 1 <= self.crops <= MAX_CROPS:
            raise UsageError(f"crops must be 1..{MAX_CROPS}, got {self.crops}")
        for d in self.shifts:
            if len(d) != 2 or not all(isinstance(v, int) and abs(v) < self.size // 2 for v in d) or d == (0, 0):
                raise UsageError(f"each test-time shift must be a non-zero [dx, dy] pair of integers below "
                                 f"{self.size // 2} in size, got {list(d)}")

    def with_views(self, mirror: bool = False, shifts: tuple[tuple[int, int], ...] = ()) -> "InputPolicy":
        """The same preprocessing with other test-time views (by default none: one view per image)."""
        return replace(self, mirror=mirror, shifts=tuple(tuple(d) for d in shifts))

    def same_input(self, other: "InputPolicy") -> bool:
        """Whether both turn an image into the same model input, test-time views aside (the crop-only
        fields do not count for a resize policy)."""
        def essential(p: InputPolicy) -> InputPolicy:
            p = p.with_views()
            return replace(p, crops=InputPolicy.crops, pad=InputPolicy.pad) if p.kind == "resize" else p

        return essential(self) == essential(other)

    def views_description(self) -> str:
        """The test-time views in words ("one view per image", "mirrored views", "6 test-time views")."""
        n = (1 + len(self.shifts)) * (2 if self.mirror else 1)
        if n == 1:
            return "one view per image"
        return "mirrored views" if self.mirror and n == 2 else f"{n} test-time views"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["shifts"] = [list(v) for v in self.shifts]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "InputPolicy":
        d = dict(d)
        d["mean"], d["std"] = tuple(d.get("mean", (0.5,) * 3)), tuple(d.get("std", (0.5,) * 3))
        d["shifts"] = tuple(tuple(v) for v in d.get("shifts", ()))
        return cls(**d)

    def views(self, pixels: np.ndarray) -> tuple[list[np.ndarray], str]:
        """Pixels -> list of `size` x `size` x 3 uint8 views, and a note of what was done."""
        views, note = self._views(pixels)
        added = []
        if self.shifts:
            added.append(f"{len(self.shifts)} shifted cop{'ies' if len(self.shifts) > 1 else 'y'} of each view "
                         f"({', '.join(f'{dx:+d},{dy:+d}px' for dx, dy in self.shifts)}, reflect)")
        if self.mirror:
            added.append("mirrored views added")
        if not added:
            return views, note
        note = "; ".join(added) if note == "none" else f"{note}; " + "; ".join(added)
        return list(np.concatenate(self.test_time_views(np.stack(views)))), note + ", logits averaged"

    def test_time_views(self, batch: np.ndarray) -> list[np.ndarray]:
        """N x S x S x 3 views -> the batch under each test-time transform, the untouched batch first.
        A view's score is the mean logit over all of them (Detector and validation alike)."""
        out = [batch] + [shift_views(batch, dx, dy) for dx, dy in self.shifts]
        if self.mirror:
            out += [np.ascontiguousarray(b[:, :, ::-1]) for b in out]
        return out

    def _views(self, pixels: np.ndarray) -> tuple[list[np.ndarray], str]:
        h, w = pixels.shape[:2]
        if self.kind == "resize":
            if (h, w) == (self.size, self.size):
                return [pixels], "none"
            return [resize_to(pixels, self.size, self.filter)], f"resized {w}x{h}->{self.size}x{self.size} ({self.filter})"
        s = self.size
        frame, padded = self.frame(pixels)
        note = [padded] if padded else []
        views = [frame[y:y + s, x:x + s] for y, x in self.positions(frame)]
        note.append(f"{len(views)} crop(s) of {s}px, logits averaged")
        return views, "; ".join(note)

    def frame(self, pixels: np.ndarray) -> tuple[np.ndarray, str]:
        """Crop policies: the image the crops are cut from, padded (never upsampled) to at least one
        patch, and a note of the padding ('' when none)."""
        h, w = pixels.shape[:2]
        s = self.size
        if h >= s and w >= s:
            return pixels, ""
        ph, pw = max(0, s - h), max(0, s - w)
        frame = np.pad(pixels, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode=self.pad)
        return frame, f"padded {w}x{h}->{frame.shape[1]}x{frame.shape[0]} ({self.pad})"

    def positions(self, frame: np.ndarray) -> list[tuple[int, int]]:
        """Crop policies: the (y, x) corner of every crop scored in a frame."""
        h, w = frame.shape[:2]
        return crop_positions(h, w, self.size, self.crops)

    def normalise(self, batch: np.ndarray):
        """N x H x W x 3 uint8 -> N x 3 x H x W float tensor."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return t.sub_(mean).div_(std)

    def model_input(self, batch: np.ndarray, device="cpu"):
        """uint8 views -> the normalised channels-last tensor every model here trains and predicts on."""
        import torch

        return self.normalise(batch).to(device).contiguous(memory_format=torch.channels_last)


def shift_views(batch: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate N x H x W x C images by (dx, dy) pixels (right and down positive), filling by reflection
    as numpy's "reflect" padding does (the edge pixel is not repeated)."""
    out = batch
    for d, axis in ((dx, 2), (dy, 1)):
        if d:
            n = out.shape[axis]
            src = np.abs(np.arange(n) - d)  # a gather, several times faster than np.pad on one small image
            out = np.take(out, np.where(src > n - 1, 2 * (n - 1) - src, src), axis=axis)
    return out if out is not batch else batch.copy()


def crop_positions(h: int, w: int, s: int, n: int) -> list[tuple[int, int]]:
    """Up to 5: centre first, then corners. More: a g x g grid, g = floor(sqrt(n)), corners included.
    Distinct positions only (a patch-sized image has one)."""
    if n > 5:
        g = int(np.floor(np.sqrt(n)))
        ys = np.linspace(0, h - s, g).round().astype(int)
        xs = np.linspace(0, w - s, g).round().astype(int)
        cands = [(int(y), int(x)) for y in ys for x in xs]
    else:
        cands = [((h - s) // 2, (w - s) // 2), (0, 0), (0, w - s), (h - s, 0), (h - s, w - s)]
    out: list[tuple[int, int]] = []
    for c in cands:
        if c not in out:
            out.append(c)
        if len(out) == n:
            break
    return out
