"""Image perturbations, shared by robustness evaluation and training-time augmentation.

Each perturbation maps H x W x 3 uint8 to H' x W' x 3 uint8 and is applied alike to real and fake
images. `parse_perturbation("jpeg:75")` builds one from its CLI spelling.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from .errors import UsageError


def _encode_pillow(pixels: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.uint8)


def jpeg(pixels: np.ndarray, quality: float = 75) -> np.ndarray:
    """JPEG re-encoding with Pillow (libjpeg), 4:2:0."""
    return _encode_pillow(pixels, "JPEG", int(quality))


def jpeg_cv2(pixels: np.ndarray, quality: float = 75) -> np.ndarray:
    """JPEG re-encoding with OpenCV's encoder (a second implementation, different rounding)."""
    try:
        import cv2  # type: ignore
    except ImportError:
        raise UsageError("jpeg_cv2 needs OpenCV: pip install opencv-python-headless") from None
    ok, buf = cv2.imencode(".jpg", pixels[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise UsageError("OpenCV could not encode JPEG")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def webp(pixels: np.ndarray, quality: float = 75) -> np.ndarray:
    return _encode_pillow(pixels, "WEBP", int(quality))


def blur(pixels: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian blur of standard deviation `sigma` pixels."""
    if sigma <= 0:
        return pixels
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(float(sigma))), dtype=np.uint8)


def _scale(pixels: np.ndarray, factor: float) -> np.ndarray:
    h, w = pixels.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)


def downscale(pixels: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """Bicubic downscale by `factor` (< 1)."""
    return _scale(pixels, factor)


def upscale(pixels: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Bicubic upscale by `factor` (> 1)."""
    return _scale(pixels, factor)


def crop(pixels: np.ndarray, fraction: float = 0.8) -> np.ndarray:
    """Central crop keeping `fraction` of each side."""
    h, w = pixels.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(pixels[y:y + ch, x:x + cw])


def noise(pixels: np.ndarray, sigma: float = 5.0, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise of `sigma` grey levels (seeded: the same noise for every run)."""
    rng = np.random.default_rng(seed)
    return np.clip(pixels + rng.normal(0, sigma, pixels.shape), 0, 255).astype(np.uint8)


def social(pixels: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """A social-media chain: downscale by `factor`, then JPEG quality 75."""
    return jpeg(downscale(pixels, factor), 75)


def hflip(pixels: np.ndarray, _unused: float = 0) -> np.ndarray:
    return np.ascontiguousarray(pixels[:, ::-1])


@dataclass(frozen=True)
class Perturbation:
    name: str
    value: float | None
    fn: Callable[..., np.ndarray]

    @property
    def label(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value:g}"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.fn(pixels) if self.value is None else self.fn(pixels, self.value)


PERTURBATIONS: dict[str, tuple[Callable[..., np.ndarray], float | None]] = {
    "jpeg": (jpeg, 75), "jpeg_cv2": (jpeg_cv2, 75), "webp": (webp, 75), "blur": (blur, 1.0),
    "downscale": (downscale, 0.5), "upscale": (upscale, 2.0), "crop": (crop, 0.8), "noise": (noise, 5.0),
    "social": (social, 0.5), "hflip": (hflip, None),
}

SWEEPS: dict[str, list[float]] = {
    "jpeg": [95, 85, 75, 60, 45, 30], "jpeg_cv2": [95, 75, 50, 30], "webp": [90, 75, 50],
    "blur": [0.5, 1.0, 2.0, 3.0], "downscale": [0.75, 0.5, 0.25], "upscale": [1.5, 2.0],
    "crop": [0.9, 0.75, 0.5], "noise": [2.0, 5.0, 10.0], "social": [0.5],
}

# Training-time augmentations: names a config may list. "hflip" keeps an 8x8 JPEG grid aligned when
# the width is a multiple of 8; "shift" (translation up to 1/8 of the side, reflected edges) and
# "cutout" (one square blanked) leave every kept pixel untouched; the others are applied at random
# strength (see train.batches).
AUGMENTATIONS = ("hflip", "shift", "cutout", "jpeg", "blur", "resize", "noise")


def parse_perturbation(spec: str) -> list[Perturbation]:
    """`jpeg:75` -> one perturbation; `jpeg` -> its default sweep; `none` -> the identity."""
    name, _, value = spec.partition(":")
    name = name.strip().lower()
    if name == "none":
        return [Perturbation("none", None, lambda p: p)]
    if name not in PERTURBATIONS:
        raise UsageError(f"unknown perturbation {name!r}; known: none, {', '.join(PERTURBATIONS)}")
    fn, default = PERTURBATIONS[name]
    if value:
        try:
            return [Perturbation(name, float(value), fn)]
        except ValueError:
            raise UsageError(f"perturbation {spec!r}: {value!r} is not a number") from None
    if default is None:
        return [Perturbation(name, None, fn)]
    return [Perturbation(name, v, fn) for v in SWEEPS.get(name, [default])]
