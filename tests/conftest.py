"""Fixtures made in the tests: tiny image sets, a tiny trained bundle, and hostile files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("REALJUDGE_CACHE", str(Path(__file__).parent / ".cache-unused"))


def _real(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Smooth 'photograph': low-frequency gradients plus mild noise."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(x * rng.uniform(1, 4) + rng.uniform(0, 6)), np.cos(y * rng.uniform(1, 4)),
                     np.sin((x + y) * rng.uniform(1, 3))], -1)
    img = 127 + 100 * base + rng.normal(0, 3, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _fake(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """'Generated': the same kind of content with a periodic high-frequency checkerboard trace."""
    img = _real(rng, size).astype(np.int16)
    checker = ((np.indices((size, size)).sum(0) % 2) * 2 - 1)[..., None] * 12
    return np.clip(img + checker, 0, 255).astype(np.uint8)


def make_images(n: int, seed: int = 0, size: int = 32) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [_real(rng, size) for _ in range(n)], [_fake(rng, size) for _ in range(n)]


def save(arr: np.ndarray, path: Path, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, fmt)
    return path


def write_flat(root: Path, n: int, seed: int = 0) -> Path:
    """root/real/r{i}.png and root/fake/f{i}.png, `n` of each (`make_images`)."""
    reals, fakes = make_images(n, seed=seed)
    for i, (r, f) in enumerate(zip(reals, fakes)):
        save(r, root / "real" / f"r{i}.png")
        save(f, root / "fake" / f"f{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_flat(tmp_path_factory) -> Path:
    """real/ + fake/ with 48 PNGs each."""
    return write_flat(tmp_path_factory.mktemp("flat"), 48)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_flat, tmp_path_factory) -> Path:
    """A cifake-cnn trained for a few epochs on `tiny_flat` (seconds on a CPU)."""
    from realjudge.train.config import TrainConfig
    from realjudge.train.engine import Trainer

    tmp = tmp_path_factory.mktemp("run")
    os.environ["REALJUDGE_CACHE"] = str(tmp / "cache")
    cfg = TrainConfig(arch="cifake-cnn", arch_kwargs={"n_conv": 1, "filters": 8, "units": 16},
                      sources=[{"path": str(tiny_flat)}], val_fraction=0.25, epochs=12, batch_size=16, lr=1e-2,
                      threads=1, schedule="constant")
    trainer = Trainer(cfg, tmp / "run", progress=False)
    trainer.fit()
    return trainer.export(tmp / "bundle", "tiny")


@pytest.fixture(scope="session")
def bad_folder(tmp_path_factory) -> Path:
    """Two good images and every kind of bad or odd file the decoder must survive."""
    root = tmp_path_factory.mktemp("bad")
    reals, fakes = make_images(2, seed=5)
    save(reals[0], root / "good1.png")
    save(fakes[0], root / "good2.jpg", "JPEG")
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image\n")
    buf = io.BytesIO()
    Image.fromarray(make_images(1, 9, 128)[0][0]).save(buf, "JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "bomb.png").write_bytes(png_header_only(60000, 60000))
    Image.fromarray(reals[1]).convert("CMYK").save(root / "cmyk.jpg", "JPEG")
    Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60)).save(root / "grey16.png")
    pal = Image.fromarray(reals[1]).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(root / "palette.png", transparency=0)
    Image.fromarray(reals[1]).convert("LA").save(root / "grey_alpha.png")
    frames = [Image.fromarray(a) for a in make_images(3, seed=7)[0]]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return root


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a tiny (wrong) body: a decompression-bomb probe."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
