"""The invisible DwtDct watermark of Stable Diffusion's reference scripts, read from decoded pixels.

SD 1.x and 2.x (CompVis / Stability `scripts/txt2img.py`) embed the bytes `StableDiffusionV1` or
`SDV2`; SDXL (generative-models, diffusers) embeds a fixed 48-bit pattern, all with
invisible-watermark's `dwtDct` method. That method, re-implemented here in numpy: convert to YUV
as OpenCV does, take the Haar approximation of the U channel, and in each 4x4 block of it read bit
`(|c| mod 36) > 18` from the largest AC coefficient; bit i is the vote of blocks i, i+L, i+2L...
invisible-watermark itself is not a dependency: it requires the GUI build of OpenCV (which needs
libGL and clashes with opencv-python-headless) and torch for a method we do not use.

Only community UIs that keep the reference scripts' watermark write it (A1111 and ComfyUI do not by
default). JPEG at quality 90 usually keeps it; any resize destroys it (the blocks move).
"""

from __future__ import annotations

import numpy as np

from .findings import Finding

SCALE, BLOCK = 36, 4
MIN_PIXELS = 256 * 256
"""invisible-watermark refuses smaller images; the vote needs many blocks per bit."""
MIN_MATCH = 0.9
"""Share of bits that must agree. Unmarked images agree on about half; 90% of 48 bits by chance is
about 1 in 10^8, and the 136-bit SD 1.x mark is far rarer."""


def _bits(value: int) -> tuple[int, ...]:
    return tuple(int(b) for b in bin(value)[2:])  # as the SDXL code writes it: leading zeros dropped


def _bytes_bits(text: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(text, np.uint8)))


MARKS = {
    "StableDiffusionV1 (SD 1.x scripts)": _bytes_bits(b"StableDiffusionV1"),
    "SDV2 (SD 2.x scripts)": _bytes_bits(b"SDV2"),
    "SDXL (generative-models, diffusers)": _bits(0b101100111110110010010000011110111011000110011110),
    "Stability generative-models (later releases)": _bits(0b001010101111111010000111100111001111010100101110),
}


def block_votes(rgb: np.ndarray) -> np.ndarray:
    """One 0/1 vote per 4x4 block of the U channel's Haar approximation, in raster order."""
    h, w = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    x = rgb[:h, :w].astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    u = np.clip(np.rint(0.492 * (x[..., 2] - y) + 128.0), 0, 255)  # OpenCV's 8-bit YUV, as the encoder saw it
    approx = u.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) / 2.0  # Haar level-1 approximation
    rows, cols = approx.shape[0] // BLOCK, approx.shape[1] // BLOCK
    blocks = approx[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)
    flat = np.abs(blocks.reshape(-1, BLOCK * BLOCK))
    peak = flat[np.arange(len(flat)), 1 + np.argmax(flat[:, 1:], axis=1)]
    return (np.mod(peak, SCALE) > 0.5 * SCALE).astype(np.float32)


def decode(votes: np.ndarray, length: int) -> np.ndarray:
    """Bits of a mark of `length` bits: the mean vote of every block carrying each bit, over 127/255."""
    sums = np.bincount(np.arange(len(votes)) % length, weights=votes, minlength=length)
    counts = np.bincount(np.arange(len(votes)) % length, minlength=length)
    return (sums / np.maximum(counts, 1) * 255 > 127).astype(np.uint8)


def read(pixels: np.ndarray | None) -> list[Finding]:
    if pixels is None or pixels.shape[0] * pixels.shape[1] < MIN_PIXELS:
        return []
    votes = block_votes(pixels)
    found = []
    for name, mark in MARKS.items():
        match = float(np.mean(decode(votes, len(mark)) == np.array(mark, np.uint8)))
        if match >= MIN_MATCH:
            text = name.split(" ")[0]
            found.append(Finding("sd_watermark", "ai", "claim", {"mark": name, "text": text, "bit_match": round(match, 3),
                                                                "bits": len(mark), "method": "dwtDct"}))
    return found
