"""Readable overlays of a heat map on a small image, and the writer behind `detect --explain`.

A 32x32 input shown at 32x32 is unreadable and a smoothed upscaling invents detail, so the image is
enlarged with nearest-neighbour (every model pixel becomes a visible block, nothing is made up) to
at least `MIN_SIDE` pixels, while the heat map, which is a smooth quantity, is enlarged bicubically
and blended through a colour map.
"""

from __future__ import annotations

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
