"""One decoder for every path (train, evaluate, detect, serve).

`decode(obj)` returns RGB uint8 pixels plus facts a record can report. It raises only
`DecodeError`, whose message is one line naming the file and the reason.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import DecodeError, UsageError
from ..provenance.container import pillow_header

# Truncated files are errors, never silently grey-filled: a half image would get a verdict it did not earn.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 64_000_000
"""Pixel limit against decompression bombs (64 MP: larger than any camera photo we expect to score)."""

FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "DIB", "WEBP", "TIFF", "PPM", "ICO", "HEIF", "AVIF")
"""The Pillow formats the decoder opens, whatever a file is named: the formats of `IMAGE_EXTENSIONS`
(MPO: camera JPEGs with a second picture; PPM: also PGM and PBM) and ICO. Pillow's other readers
(TGA, PCX, SGI, EPS and a few dozen more, some of which accept almost any bytes) are never tried, so
a hostile file cannot reach them."""

DEFAULT_MAX_FILE_BYTES = 256 << 20
"""Bytes read from one file (or one archive member: `containers.ArchiveLimits.max_member_bytes`): above
the largest file the pixel limit lets through (an uncompressed 64 MP TIFF is 192 MB)."""
MAX_FILE_BYTES_ENV = "REALJUDGE_ARCHIVE_MAX_MEMBER_BYTES"
"""The environment variable that overrides it, for files and archive members alike."""


def parse_size(var: str, raw: str) -> int:
    """A byte count or count from an environment variable: digits, optionally with K, M, G or T (`512M`)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", raw.lower())
    if not m:
        raise UsageError(f"{var}={raw!r}: expected a whole number, optionally with K, M or G (e.g. 512M)")
    return int(m.group(1)) << (10 * " kmgt".index(m.group(2) or " "))


def file_byte_limit() -> int:
    """`DEFAULT_MAX_FILE_BYTES`, or the environment's `MAX_FILE_BYTES_ENV`."""
    raw = os.environ.get(MAX_FILE_BYTES_ENV)
    if raw in (None, ""):
        return DEFAULT_MAX_FILE_BYTES
    value = parse_size(MAX_FILE_BYTES_ENV, raw)
    if value < 1:
        raise UsageError(f"{MAX_FILE_BYTES_ENV} must be at least 1, got {raw!r}")
    return value


_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error,
                   ArithmeticError, RuntimeError)
"""What Pillow's readers raise on malformed files besides their documented OSError: a GIF cut inside a
frame header raises struct.error while counting frames, a bad table IndexError or KeyError, a zero
field ZeroDivisionError, a self-referencing structure RecursionError. Each is the file's fault."""

_OPTIONAL_PLUGINS_LOADED = False
_OPEN_FORMATS: tuple[str, ...] | None = None


def _open_formats() -> tuple[str, ...]:
    """`FORMATS` that this Pillow opens (MPO is opened by the JPEG reader; HEIF needs its plug-in)."""
    global _OPEN_FORMATS
    if _OPEN_FORMATS is None:
        Image.init()
        _OPEN_FORMATS = tuple(f for f in FORMATS if f in Image.OPEN)
    return _OPEN_FORMATS


def _load_optional_plugins() -> None:
    """HEIC and AVIF work where their Pillow plug-ins are installed; nothing is required."""
    global _OPTIONAL_PLUGINS_LOADED
    if _OPTIONAL_PLUGINS_LOADED:
        return
    _OPTIONAL_PLUGINS_LOADED = True
    try:
        import pillow_heif  # type: ignore

        pillow_heif.register_heif_opener()
    except Exception:
        pass
    try:
        import pillow_avif  # type: ignore  # noqa: F401
    except Exception:
        pass


@dataclass
class Decoded:
    """RGB pixels (H x W x 3, uint8) and what we learnt about the file."""

    pixels: np.ndarray
    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    # The metadata blocks of the file's header as Pillow parsed them (provenance.container.pillow_header);
    # None for pixels that came without a file.
    header: dict | None = None


# IJG standard luminance table (JPEG Annex K), in natural order; used to estimate the quality factor.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)


def estimate_jpeg_quality(im: Image.Image) -> int | None:
    tables = getattr(im, "quantization", None)
    if not tables or 0 not in tables:
        return None
    return _quality_from_table(tuple(tables[0]))


@functools.lru_cache(maxsize=256)
def _quality_from_table(table: tuple[int, ...]) -> int | None:
    """IJG-equivalent quality (1..100) from the luminance quantisation table, or None if not JPEG.

    Pillow exposes tables in zig-zag-free natural order since 8.x; the estimate inverts libjpeg's
    scaling (`scale = 5000/q` below 50, `200 - 2q` above) using the median ratio to the standard table.
    Cached per table: a batch from one camera or encoder shares a handful of tables.
    """
    luma = np.asarray(table, dtype=np.float64)
    if luma.size != 64:
        return None
    scale = float(np.median(luma * 100.0 / _IJG_LUMA))
    if scale <= 0:
        return 100
    q = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return int(np.clip(round(q), 1, 100))


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Every Pillow mode to RGB uint8, each case on purpose.

    - alpha (RGBA, LA, PA, P with transparency): composited over white, as a viewer shows it;
    - 16/32-bit integer and float greys: scaled to 8 bits by their nominal range, not clipped;
    - CMYK, YCbCr, LAB, HSV, 1, L: Pillow's own conversion.
    """
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im, dtype=np.uint16).astype(np.float32) / 257.0
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 255.0 if arr.max(initial=0) <= 255 else (65535.0 if arr.max() <= 65535 else float(arr.max()))
        grey = np.clip(np.rint(arr * 255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def _from_pil(im: Image.Image, name: str, max_pixels: int, facts: dict[str, Any], from_file: bool = False) -> Decoded:
    header = pillow_header(im) if from_file else None  # before loading: the header's own blocks
    w, h = im.size
    facts.update(format=im.format or facts.get("format"), width=w, height=h, mode=im.mode)
    if w * h > max_pixels:
        raise DecodeError(name, f"image too large ({w}x{h} = {w * h} pixels; the limit is {max_pixels})")
    if w == 0 or h == 0:
        raise DecodeError(name, "image has no pixels")
    try:
        frames = getattr(im, "n_frames", 1)  # counting frames reads the whole file: it fails like loading
        facts["frames"] = frames
        if frames > 1:
            im.seek(0)  # animated: the first frame is scored, and the record says so through `frames`
        facts["jpeg_quality"] = estimate_jpeg_quality(im) if (im.format == "JPEG") else None
        im.load()
        im = ImageOps.exif_transpose(im) or im
        pixels = _to_rgb(im)
    except DecodeError:
        raise
    except Image.DecompressionBombError:
        raise DecodeError(name, "image too large (decompression bomb guard)") from None
    except _DECODER_ERRORS as err:
        raise DecodeError(name, _reason(err)) from None
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DecodeError(name, f"unexpected pixel layout {pixels.shape}")
    return Decoded(np.ascontiguousarray(pixels), name, facts, header)


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    low = text.lower()
    if "truncated" in low or "premature end" in low or isinstance(err, EOFError):
        return f"truncated or corrupt image data ({text})"
    return f"cannot decode image ({text})"


def decode_bytes(data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode an encoded image held in memory."""
    _load_optional_plugins()
    if not data:
        raise DecodeError(name, "empty file")
    facts: dict[str, Any] = {"bytes": len(data)}
    try:
        with warnings.catch_warnings():
            # Our own pixel limit replaces Pillow's bomb warning (its hard error is still caught below), and
            # a reader's complaints about a malformed file ("Truncated File Read", "Corrupt EXIF data") never
            # reach stderr as Python warnings: the file either decodes or becomes a one-line DecodeError.
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=_open_formats())
            return _from_pil(im, name, max_pixels, facts, from_file=True)
    except DecodeError:
        raise
    except Image.DecompressionBombError:
        raise DecodeError(name, f"image too large (decompression bomb guard; the limit is {max_pixels} pixels)") from None
    except UnidentifiedImageError:
        raise DecodeError(name, "not an image, or not in a format realjudge reads "
                                "(JPEG, PNG, GIF, BMP, WebP, TIFF, PPM/PGM/PBM, ICO, HEIC, AVIF)") from None
    except _DECODER_ERRORS as err:
        raise DecodeError(name, _reason(err)) from None
    except MemoryError:
        raise DecodeError(name, "not enough memory to decode") from None


def read_file(path: str | os.PathLike, name: str | None = None, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (a symbolic link is followed to one), at most `max_bytes` (default:
    `file_byte_limit()`). A FIFO, a device or a socket is refused without blocking on it, and a file
    that grows while it is read stops at the limit."""
    name = name or str(path)
    if max_bytes is None:
        max_bytes = file_byte_limit()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise DecodeError(name, "no such file") from None
    except IsADirectoryError:
        raise DecodeError(name, "is a directory") from None
    except PermissionError:
        raise DecodeError(name, "permission denied") from None
    except OSError as err:
        raise DecodeError(name, f"cannot read ({err.strerror or err})") from None
    except ValueError as err:  # an embedded NUL in the path
        raise DecodeError(name, f"cannot read ({err})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise DecodeError(name, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError(name, "not a regular file (a device, FIFO or socket): not read")
        if st.st_size > max_bytes:
            raise DecodeError(name, f"file is {st.st_size} bytes; the limit is {max_bytes} ({MAX_FILE_BYTES_ENV})")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise DecodeError(name, f"file grew past the limit of {max_bytes} bytes while it was read")
        return b"".join(chunks)
    except PermissionError:
        raise DecodeError(name, "permission denied") from None
    except OSError as err:
        raise DecodeError(name, f"cannot read ({err.strerror or err})") from None
    finally:
        os.close(fd)


def decode(obj: Any, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode a path, bytes, a PIL image or an H x W x 3 uint8 array."""
    if isinstance(obj, Decoded):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        label = name or str(obj)
        return decode_bytes(read_file(obj, label), label, max_pixels)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(obj), name or "<bytes>", max_pixels)
    if isinstance(obj, Image.Image):
        label = name or "<PIL image>"
        try:
            return _from_pil(obj, label, max_pixels, {"format": obj.format})
        except DecodeError:
            raise
        except Exception as err:  # a PIL object of a mode we cannot convert
            raise DecodeError(label, _reason(err)) from None
    if isinstance(obj, np.ndarray):
        return _from_array(obj, name or "<array>")
    raise DecodeError(name or repr(type(obj).__name__), f"unsupported input type {type(obj).__name__}")


def _from_array(arr: np.ndarray, name: str) -> Decoded:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DecodeError(name, f"array must be H x W x 3 (RGB), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DecodeError(name, f"empty image ({arr.shape[1]}x{arr.shape[0]} pixels)")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = np.rint(arr * 255.0)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.shape[2] == 4:
        arr = _to_rgb(Image.fromarray(arr, "RGBA"))
    h, w = arr.shape[:2]
    facts = {"format": "array", "width": w, "height": h, "mode": "RGB", "jpeg_quality": None, "frames": 1}
    return Decoded(np.ascontiguousarray(arr), name, facts)
