"""The invisible DwtDct watermark of Stable Diffusion's reference scripts, read from decoded pixels.

SD 1.x and 2.x (CompVis / Stability `scripts/txt2img.py`) embed the bytes `StableDiffusionV1` or
`SDV2`; SDXL (generative-models, diffusers) embeds a fixed 48-bit pattern, all with
invisible-watermark's `dwtDct` method. That method, re-implemented here in numpy: convert to YUV
as OpenCV does, take the Haar approximation of the U channel, and in each 4x4 block of it read bit
`(|c| mod 36) > 18` from the largest AC coefficient; bit i is the vote of blocks i, i+L, i+2L...
invisible-watermark itself is not a dependency: it requires the GUI build of OpenCV (which needs
libGL and clashes with opencv-python-headless) and torch for a method we do not use.

`read` votes with every block. Voting with only the first block rows (`block_votes(max_blocks=...)`)
would make its cost flat above 512x512, but `benchmarks/watermark_votes.py` measured it losing the
mark on many textured 1024-px images that the full vote reads; it stays off. `embed` is the
encoder's side, for fixtures and that measurement.

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


def block_votes(rgb: np.ndarray, max_blocks: int | None = None) -> np.ndarray:
    """One 0/1 vote per 4x4 block of the U channel's Haar approximation, in raster order; with
    `max_blocks`, only the first block rows that hold that many (a prefix of the full votes)."""
    h, w = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    if max_blocks is not None:
        per_row = max(1, w // (2 * BLOCK))  # one block row is 2 * BLOCK pixel rows
        h = min(h, -(-max_blocks // per_row) * 2 * BLOCK)
    r, g, b = (rgb[:h, :w, i].astype(np.float32) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = np.clip(np.rint(0.492 * (b - y) + 128.0), 0, 255)  # OpenCV's 8-bit YUV, as the encoder saw it
    approx = (u[0::2, 0::2] + u[1::2, 0::2] + u[0::2, 1::2] + u[1::2, 1::2]) / 2.0  # Haar level-1 approximation
    rows, cols = approx.shape[0] // BLOCK, approx.shape[1] // BLOCK
    approx = approx[:rows * BLOCK, :cols * BLOCK]  # non-negative, so its largest AC magnitude is a plain maximum
    # Strided views of each AC position, not a transposed copy of every block: 1.7x faster on 1024 px.
    peak = approx[0::BLOCK, 1::BLOCK].copy()
    for k in range(2, BLOCK * BLOCK):
        np.maximum(peak, approx[k // BLOCK::BLOCK, k % BLOCK::BLOCK], out=peak)
    return (np.mod(peak, SCALE) > 0.5 * SCALE).astype(np.float32).ravel()


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


def embed(rgb: np.ndarray, bits) -> np.ndarray:
    """invisible-watermark's dwtDct embedding, in numpy: quantise the largest AC coefficient of each 4x4
    block of the U channel's Haar approximation to (|c| // 36 + 0.25 + 0.5 * bit) * 36, bit i of the
    mark in blocks i, i+L, ... (the encoder's side of `read`, for fixtures and measurements)."""
    h, w = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    x = rgb.astype(np.float64)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    u, v = 0.492 * (x[..., 2] - y) + 128, 0.877 * (x[..., 0] - y) + 128
    a = u[:h, :w].reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) / 2
    rows, cols = a.shape[0] // BLOCK, a.shape[1] // BLOCK
    blocks = a[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, BLOCK * BLOCK).copy()
    pos = 1 + np.argmax(np.abs(blocks[:, 1:]), axis=1)
    idx = np.arange(len(blocks))
    val = blocks[idx, pos]
    bit = np.array(bits, np.float64)[idx % len(bits)]
    blocks[idx, pos] = np.sign(val + (val == 0)) * (np.abs(val) // SCALE + 0.25 + 0.5 * bit) * SCALE
    new_a = a.copy()
    new_a[:rows * BLOCK, :cols * BLOCK] = blocks.reshape(rows, cols, BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(
        rows * BLOCK, cols * BLOCK)
    # Changing a Haar approximation coefficient by d changes each of its 2x2 pixels by d / 2.
    u = u.copy()
    u[:h, :w] += np.repeat(np.repeat((new_a - a) / 2, 2, axis=0), 2, axis=1)
    b = (u - 128) / 0.492 + y
    r = (v - 128) / 0.877 + y
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255).astype(np.uint8)
