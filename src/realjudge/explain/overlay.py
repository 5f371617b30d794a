"""Readable overlays of a heat map on a small image, and the writer behind `detect --explain`.

A 32x32 input shown at 32x32 is unreadable and a smoothed upscaling invents detail, so the image is
enlarged with nearest-neighbour (every model pixel becomes a visible block, nothing is made up) to
at least `MIN_SIDE` pixels, while the heat map, which is a smooth quantity, is enlarged bicubically
and blended through a colour map.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

MIN_SIDE = 256
COLORMAP = "jet"
ALPHA = 0.45


def upscale_factor(height: int, width: int, min_side: int = MIN_SIDE) -> int:
    """The smallest integer factor that brings the short side to `min_side` (1 for large images)."""
    return max(1, -(-min_side // max(1, min(height, width))))


def colorize(heat: np.ndarray, colormap: str = COLORMAP) -> np.ndarray:
    """H x W map in [0, 1] -> H x W x 3 uint8 through a matplotlib colour map."""
    from matplotlib import colormaps

    rgba = colormaps[colormap](np.clip(heat, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


MAX_SIDE = 1600  # overlays of large photographs are shown at most this wide or tall


def render_overlay(image: np.ndarray, heat: np.ndarray, min_side: int = MIN_SIDE, alpha: float = ALPHA,
                   colormap: str = COLORMAP, mask: np.ndarray | None = None, boxes=(), caption: str | None = None,
                   max_side: int = MAX_SIDE) -> Image.Image:
    """Blend `heat` (any size, values in [0, 1]) on `image` (H x W x 3 uint8), enlarged to >= `min_side`.

    `mask` (H x W bool, image resolution): where the map is defined; elsewhere the image is greyed.
    `boxes`: (x, y, size) squares in image pixels to outline. `caption`: a line under the image."""
    h, w = image.shape[:2]
    k = upscale_factor(h, w, min_side)
    size = (w * k, h * k)
    if max(size) > max_side:  # a large photograph: shown smaller, never enlarged
        f = max_side / max(size)
        size = (max(1, round(size[0] * f)), max(1, round(size[1] * f)))
    resample = Image.Resampling.NEAREST if k > 1 else Image.Resampling.BILINEAR
    big = np.asarray(Image.fromarray(image).resize(size, resample), np.float32)
    heat_big = Image.fromarray(np.asarray(heat, np.float32), mode="F").resize(size, Image.Resampling.BICUBIC)
    colour = colorize(np.clip(np.asarray(heat_big), 0.0, 1.0), colormap).astype(np.float32)
    out = (1 - alpha) * big + alpha * colour
    if mask is not None:
        m = np.asarray(Image.fromarray(np.asarray(mask, np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0
        grey = big.mean(-1, keepdims=True) * 0.5 + 64
        out = np.where(m[..., None], out, grey)
    img = Image.fromarray((out + 0.5).clip(0, 255).astype(np.uint8), "RGB")
    if boxes or caption:
        from PIL import ImageDraw

        sx, sy = size[0] / w, size[1] / h
        draw = ImageDraw.Draw(img)
        for x, y, s in boxes:
            draw.rectangle([x * sx, y * sy, (x + s) * sx - 1, (y + s) * sy - 1], outline=(255, 255, 255))
        if caption:
            band = 16
            framed = Image.new("RGB", (img.width, img.height + band), (0, 0, 0))
            framed.paste(img, (0, 0))
            ImageDraw.Draw(framed).text((4, img.height + 2), caption, fill=(255, 255, 255))
            img = framed
    return img


def enlarge(image: np.ndarray, min_side: int = MIN_SIDE) -> Image.Image:
    """The image alone, nearest-neighbour enlarged like its overlay (for side-by-side panels)."""
    h, w = image.shape[:2]
    k = upscale_factor(h, w, min_side)
    return Image.fromarray(image).resize((w * k, h * k), Image.Resampling.NEAREST)


def _safe_stem(locator: str) -> str:
    """A file name from a path or `archive::member`: the last component, unsafe characters replaced."""
    last = re.split(r"[\\/]|::", locator.rstrip("/"))[-1] or "image"
    stem = last.rsplit(".", 1)[0] if "." in last[1:] else last
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


class OverlayWriter:
    """Writes `<stem>.<method>.png` per scored record into `folder` (`detect --explain`).

    Names are made unique (`-2`, `-3`...) because several inputs can share a file name.
    """

    def __init__(self, folder: str | Path, method: str = "gradcam"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.method = method
        self._used: set[str] = set()
        self.written: list[Path] = []
        self.last_explained = ""

    def _path_for(self, locator: str) -> Path:
        stem = _safe_stem(locator)
        name, i = f"{stem}.{self.method}.png", 1
        while name in self._used:
            i += 1
            name = f"{stem}-{i}.{self.method}.png"
        self._used.add(name)
        return self.folder / name

    def write(self, router, record) -> Path:
        from ..io.sources import Sample
        from . import explain

        detector = router.detectors[record.model]
        data = Sample(record.path).read_bytes()
        exp = explain(detector, data, method=self.method, name=record.path)
        from . import describe_explained

        self.last_explained = describe_explained(exp)
        path = self._path_for(record.path)
        path.write_bytes(exp.overlay_png())
        self.written.append(path)
        return path
