"""The CIFAKE layout on disk: `OUT/<split>/REAL|FAKE/` with CIFAKE's file names, and image writing.

CIFAKE's names come from Windows' copy numbering: within a class folder of the original release the
first image of a number is `NNNN.jpg` and the others are `NNNN (2).jpg` ... `NNNN (10).jpg`. In the
published set the suffix encodes the class: no suffix is class 0 (airplane), `(2)` is class 1
(automobile), ..., `(10)` is class 9 (truck); there is no `(1)`. We write the same names so that
tools made for CIFAKE read our sets. The names leak the class (and, in CIFAKE itself, REAL and FAKE
use different number ranges): never feed a file name to a model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..preprocess import FILTERS

SPLITS = ("train", "test")
FORMATS = {"jpeg": ".jpg", "png": ".png"}
_SUFFIX = re.compile(r"^(\d+)(?: \((\d+)\))?\.\w+$")


def cifake_name(number: int, class_index: int, fmt: str = "jpeg") -> str:
    """`0007.jpg` for class 0, `0007 (k+1).jpg` for class k >= 1 (CIFAKE's numbering, see the module doc)."""
    ext = FORMATS[fmt]
    return f"{number:04d}{ext}" if class_index == 0 else f"{number:04d} ({class_index + 1}){ext}"


def cifake_class(name: str) -> int | None:
    """The class index that a CIFAKE file name encodes, or None for a name that is not CIFAKE-style."""
    m = _SUFFIX.match(Path(name).name)
    if not m:
        return None
    return 0 if m.group(2) is None else int(m.group(2)) - 1


def image_dir(out: Path, split: str, label: str) -> Path:
    """`OUT/<split>/REAL` or `OUT/<split>/FAKE`."""
    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    return out / split / label


def check_output(fmt: str, jpeg_quality: int, filter_name: str | None = None) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not 1 <= jpeg_quality <= 100:
        raise UsageError(f"--jpeg-quality must be 1..100, got {jpeg_quality}")
    if filter_name is not None and filter_name not in FILTERS:
        raise UsageError(f"--filter: unknown resize filter {filter_name!r}; known: {', '.join(FILTERS)}")


def downscale(image: Image.Image, size: int, filter_name: str) -> Image.Image:
    """Centre-crop to a square (generators make squares; this only guards odd sizes), then resize
    to `size` x `size` with the named filter. The filter leaves its own trace in the pixels, so it is
    recorded in the manifest."""
    image = image.convert("RGB")
    w, h = image.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        image = image.crop((left, top, left + s, top + s))
    if image.size != (size, size):
        image = image.resize((size, size), FILTERS[filter_name])
    return image


def is_blank(image: Image.Image) -> bool:
    """One colour everywhere: what a NaN in float16 decoding or a safety checker leaves behind."""
    a = np.asarray(image)
    return bool(a.min() == a.max())


def encode_options(fmt: str, jpeg_quality: int) -> dict:
    """CIFAKE's encoder: baseline JPEG, 4:2:0 chroma subsampling, quality 75 by default."""
    if fmt == "jpeg":
        return {"format": "JPEG", "quality": jpeg_quality, "subsampling": "4:2:0", "optimize": False,
                "progressive": False}
    return {"format": "PNG"}


def save_image(image: Image.Image, path: Path, fmt: str, jpeg_quality: int) -> None:
    """Write through a hidden temporary file and rename, so that a file with the final name is always
    complete: resumption trusts existing files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    image.save(tmp, **encode_options(fmt, jpeg_quality))
    os.replace(tmp, path)


def remove_partial_files(folder: Path) -> None:
    """Temporary files left by an interrupted run."""
    if folder.is_dir():
        for p in folder.glob(".*.part"):
            p.unlink(missing_ok=True)


def present(path: Path) -> bool:
    """An existing, non-empty file counts as done."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False
