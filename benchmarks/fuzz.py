"""Fuzz every way a hostile file reaches realjudge: decode, the data layer, detect, and the service's uploads.

    python benchmarks/fuzz.py --inputs 2000 --seed 1 --out /tmp/fuzz.json
    python benchmarks/fuzz.py --inputs 100000 --seed 1 --out docs/reliability/fuzz.json

Hypothesis draws each input: a kind (an image format, an archive, an upload body), a seed built in
code (small images of every supported format, zips, tars and tar.gz of them, multipart and JSON
bodies) and a list of mutations (bit flips, truncation, byte insertion and deletion, duplicated slices,
interesting integers, splices, and format-aware ones: PNG dimensions and chunks with their CRCs fixed,
JPEG SOF and segments, GIF, BMP, TIFF, WebP, PPM and ICO header fields, zip directory and local headers,
tar headers with their checksums fixed, gzip members, multipart structure and JSON shapes).

Stages, each under the per-input time limit:

- decode: `decode_bytes` of every image the input holds;
- layouts: the input written to a temporary folder (in a labelled layout) or as an archive beside a
  good image, then `open_container`, `open_source`, `expand_inputs` and `iter_sample_bytes`;
- detect (every `--detect-every`-th input): `pipeline.run` over the router of the shipped detectors,
  with a good image in the batch that must still be scored;
- cli (every `--cli-every`-th input): `realjudge detect` in-process through click's CliRunner: exit 0 or
  1, no traceback, one `realjudge: error: ...` line per error record (other stderr lines than
  `realjudge: error|warning|note: ...` are counted as stray);
- upload (bodies): `serve.uploads.parse_body`, whose clean failure is an `ApiError`.

A crash is any other exception (or a broken invariant: a lost good image, an error of more than one
line); a hang is a stage over the time limit. The JSON result holds the counts, the first crashes and
hangs with their inputs (base64), the distinct clean failure reasons (numbers and quoted names
normalised away) and the peak RSS. `run_fuzz(...)` is the core the CI test calls with a fixed seed.
"""

from __future__ import annotations

import argparse
import base64
import faulthandler
import gzip
import hashlib
import io
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


from realjudge.data import containers  # noqa: E402
from realjudge.data.decode import decode_bytes  # noqa: E402
from realjudge.data.inputs import expand_inputs  # noqa: E402
from realjudge.data.layouts import open_source  # noqa: E402
from realjudge.data.samples import iter_sample_bytes  # noqa: E402
from realjudge.errors import RealjudgeError  # noqa: E402

import logging  # noqa: E402

logging.getLogger("python_multipart").setLevel(logging.CRITICAL)  # it logs every malformed body it sees

try:
    from realjudge.serve.uploads import ApiError, parse_body  # needs the `serve` extra (python-multipart)
except ImportError:  # pragma: no cover
    ApiError, parse_body = None, None

IMAGE_KINDS = ("png", "jpeg", "gif", "bmp", "webp", "tiff", "ppm", "ico")
ARCHIVE_KINDS = ("zip", "tar", "tar.gz")
BODY_KINDS = ("multipart", "json")
KINDS = IMAGE_KINDS + ARCHIVE_KINDS + BODY_KINDS
EXT = {"png": ".png", "jpeg": ".jpg", "gif": ".gif", "bmp": ".bmp", "webp": ".webp", "tiff": ".tif",
       "ppm": ".ppm", "ico": ".ico"}
CLEAN = (RealjudgeError,) + ((ApiError,) if ApiError else ())
"""The documented clean failures: DecodeError, SourceError, UsageError (all RealjudgeError) and ApiError."""

KNOWN_ISSUES: dict[tuple[str, str, str], str] = {}
"""Crashes in code outside this harness's remit, reported apart (`known_issues`) rather than as crashes.
Keyed by (stage, exception type, file of the innermost realjudge frame). Empty: the two found in
serve/uploads.py (RecursionError on deeply nested JSON, FormParserError on a boundary over 256
characters) are 400 answers now, and count as crashes again if they come back."""

INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 30000, 65500, 100_000,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 8001, 16385)


# --------------------------------------------------------------------------------------------- seeds


def _pixels(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(h + w - 2, 1)], -1)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def image_seeds() -> dict[str, list[bytes]]:
    """Small images of each format, in several modes and encodings (built here, deterministic)."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(_pixels(rng, 24, 24))
    big = Image.fromarray(_pixels(rng, 72, 80))  # routed to the natural detector
    rgba = rgb.convert("RGBA")
    grey = rgb.convert("L")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    exif[0x010F] = "FuzzCam"
    frames = [Image.fromarray(_pixels(rng, 16, 16)) for _ in range(3)]
    grey16 = Image.fromarray((np.arange(20 * 20, dtype=np.uint16).reshape(20, 20) * 150))
    seeds: dict[str, list[bytes]] = {k: [] for k in IMAGE_KINDS}
    png_text = {"pnginfo": _pnginfo({"parameters": "a photo, Steps: 20, Sampler: Euler", "Software": "fuzz"})}
    seeds["png"] += [_save(rgb, "PNG"), _save(rgba, "PNG"), _save(pal, "PNG", transparency=0), _save(grey16, "PNG"),
                     _save(rgb.convert("1"), "PNG"), _save(rgb, "PNG", **png_text), _save(big, "PNG", optimize=True),
                     _save(rgb, "PNG", exif=exif.tobytes()),
                     _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=40)]  # APNG
    seeds["jpeg"] += [_save(rgb, "JPEG", quality=75), _save(rgb, "JPEG", quality=90, progressive=True),
                      _save(rgb, "JPEG", exif=exif.tobytes()), _save(grey, "JPEG"), _save(rgb.convert("CMYK"), "JPEG"),
                      _save(big, "JPEG", quality=60, subsampling=2), _save(rgb, "JPEG", quality=95, subsampling=0)]
    seeds["gif"] += [_save(pal, "GIF"), _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50,
                                              loop=0), _save(pal, "GIF", transparency=0), _save(big, "GIF")]
    seeds["bmp"] += [_save(rgb, "BMP"), _save(pal, "BMP"), _save(grey, "BMP"), _save(rgba, "BMP"),
                     _save(rgb.convert("1"), "BMP")]
    seeds["webp"] += [_save(rgb, "WEBP", quality=80), _save(rgb, "WEBP", lossless=True), _save(rgba, "WEBP"),
                      _save(big, "WEBP"), _save(rgb, "WEBP", exif=exif.tobytes())]
    seeds["tiff"] += [_save(rgb, "TIFF"), _save(rgb, "TIFF", compression="tiff_lzw"),
                      _save(rgb, "TIFF", compression="tiff_adobe_deflate"), _save(rgb, "TIFF", compression="packbits"),
                      _save(grey16, "TIFF"), _save(rgba, "TIFF"), _save(rgb, "TIFF", compression="jpeg"),
                      _save(frames[0], "TIFF", save_all=True, append_images=frames[1:])]
    seeds["ppm"] += [_save(rgb, "PPM"), _save(grey, "PPM"), _save(rgb.convert("1"), "PPM"),
                     b"P3\n4 2\n255\n" + b" ".join(b"%d" % v for v in range(24)) + b"\n"]
    seeds["ico"] += [_save(rgb, "ICO", sizes=[(16, 16), (24, 24)]), _save(rgba, "ICO", sizes=[(24, 24)]),
                     _save(big, "ICO", sizes=[(32, 32)], bitmap_format="bmp")]
    return seeds


def _pnginfo(texts: dict[str, str]):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    return info


def good_image() -> bytes:
    """The image beside every hostile one, which must always be scored."""
    return _save(Image.fromarray(_pixels(np.random.default_rng(7), 32, 32)), "PNG")


def _zip(members: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression) as zf:
        warnings.simplefilter("ignore", UserWarning)  # duplicated names are one of the mutations
        for name, data in members:
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: list[tuple[str, bytes]], fmt=tarfile.USTAR_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def archive_seeds(images: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    pick = [images["png"][0], images["jpeg"][0], images["gif"][0], images["webp"][0], images["bmp"][0],
            images["png"][6], images["tiff"][1]]
    layouts = [
        [("real/a.png", pick[0]), ("fake/b.jpg", pick[1])],
        [("train/REAL/1.png", pick[0]), ("train/FAKE/2 (3).jpg", pick[1]), ("train/", b"")],
        [("0_real/x.gif", pick[2]), ("1_fake/y.webp", pick[3]), ("notes.txt", b"hello")],
        [("a.png", pick[0]), ("b.bmp", pick[4]), ("c.tif", pick[6]), ("big.png", pick[5])],
        [("manifest.csv", b"path,label\nimgs/a.png,real\nimgs/b.jpg,fake\n"), ("imgs/a.png", pick[0]),
         ("imgs/b.jpg", pick[1])],
    ]
    inner = _zip([("inner/a.png", pick[0])])
    zips = [_zip(m) for m in layouts] + [_zip(layouts[0], zipfile.ZIP_STORED),
                                          _zip([("outer.png", pick[1]), ("nested.zip", inner)]),
                                          _zip(layouts[1], zipfile.ZIP_BZIP2), _zip(layouts[2], zipfile.ZIP_LZMA)]
    tars = [_tar(m) for m in layouts] + [_tar(layouts[0], tarfile.GNU_FORMAT), _tar(layouts[3], tarfile.PAX_FORMAT),
                                          _tar([("x.png", pick[0]), ("nested.tar", _tar([("y.png", pick[1])]))])]
    return {"zip": zips, "tar": tars, "tar.gz": [gzip.compress(t, mtime=0) for t in tars]}


BOUNDARY = "fuzzboundary7MA4YWxkTrZu0gW"


def multipart_body(parts: list[tuple[str, str | None, bytes]], boundary: str = BOUNDARY) -> bytes:
    out = []
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        ctype = "Content-Type: image/png\r\n" if filename is not None else ""
        out.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n{ctype}\r\n".encode() + data + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


def body_seeds(images: dict[str, list[bytes]]) -> dict[str, list[tuple[bytes, str]]]:
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    png, jpg = images["png"][0], images["jpeg"][0]
    multipart = [
        (multipart_body([("file", "a.png", png)]), ctype),
        (multipart_body([("file", "a.png", png), ("file", "b.jpg", jpg), ("model", None, b"cifake"),
                         ("threshold", None, b"0.5")]), ctype),
        (multipart_body([("file", "../../etc/x.png", png), ("verdict", None, b"combined")]), ctype),
    ]
    b64 = base64.b64encode(png).decode()
    json_bodies = [
        (json.dumps({"images": [{"name": "a.png", "data": b64}]}).encode(), "application/json"),
        (json.dumps({"images": [{"name": "a.png", "data": b64}, {"data": "data:image/jpeg;base64,"
                     + base64.b64encode(jpg).decode()}], "model": "cifake", "threshold": 0.4}).encode(),
         "application/json"),
    ]
    return {"multipart": multipart, "json": json_bodies}


# ----------------------------------------------------------------------------------------- mutations


def _pos(data: bytes, a: int) -> int:
    return a % (len(data) + 1)


def m_bitflip(data: bytes, a: int, b: int, ctx) -> bytes:
    if not data:
        return data
    i = a % len(data)
    return data[:i] + bytes([data[i] ^ (1 << (b % 8))]) + data[i + 1:]


def m_byteset(data: bytes, a: int, b: int, ctx) -> bytes:
    if not data:
        return data
    i = a % len(data)
    return data[:i] + bytes([(0, 0xFF, 0x7F, 0x80, b & 0xFF)[b % 5]]) + data[i + 1:]


def m_truncate(data: bytes, a: int, b: int, ctx) -> bytes:
    return data[: _pos(data, a)] if b % 4 else data[: len(data) - 1 - (a % max(len(data) // 8, 1))]


def m_insert(data: bytes, a: int, b: int, ctx) -> bytes:
    i, n = _pos(data, a), 1 + b % 64
    rnd = random.Random(b)
    blob = bytes(rnd.getrandbits(8) for _ in range(n)) if b % 3 else bytes([b & 0xFF]) * n
    return data[:i] + blob + data[i:]


def m_delete(data: bytes, a: int, b: int, ctx) -> bytes:
    i = _pos(data, a)
    return data[:i] + data[i + 1 + b % 64:]


def m_duplicate(data: bytes, a: int, b: int, ctx) -> bytes:
    i = _pos(data, a)
    piece = data[i:i + 1 + b % 512]
    return data[:i] + piece * (2 + b % 3) + data[i + len(piece):]


def m_interesting(data: bytes, a: int, b: int, ctx) -> bytes:
    if len(data) < 4:
        return data
    width = (1, 2, 4)[b % 3]
    i = a % (len(data) - width + 1)
    v = INTERESTING[(b // 3) % len(INTERESTING)] & ((1 << (8 * width)) - 1)
    return data[:i] + v.to_bytes(width, "big" if (b // 64) % 2 else "little") + data[i + width:]


def m_splice(data: bytes, a: int, b: int, ctx) -> bytes:
    pool = ctx["pool"]
    other = pool[b % len(pool)]
    return data[: _pos(data, a)] + other[_pos(other, b):]


# PNG: chunks with their CRCs recomputed, so the mutation reaches the decoder instead of the CRC check.


def _png_chunks(data: bytes) -> list[list] | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    out, i = [], 8
    while i + 8 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        kind = data[i + 4:i + 8]
        body = data[i + 8:i + 8 + n]
        out.append([kind, body])
        i += 12 + n
        if kind == b"IEND":
            break
    return out


def _png_join(chunks) -> bytes:
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in chunks:
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return b"".join(out)


def m_png(data: bytes, a: int, b: int, ctx) -> bytes:
    chunks = _png_chunks(data)
    if not chunks:
        return m_interesting(data, a, b, ctx)
    op = b % 7
    i = a % len(chunks)
    if op in (0, 1) and (chunks[0][0] != b"IHDR" or len(chunks[0][1]) < 13):
        op = 2  # no whole IHDR to edit (an earlier mutation cut it): duplicate a chunk instead
    if op == 0:  # huge or odd declared dimensions
        w, h = struct.unpack(">II", chunks[0][1][:8])
        which = (a >> 8) % 3  # the width, the height or both
        w = INTERESTING[a % len(INTERESTING)] if which != 1 else w
        h = INTERESTING[(a >> 4) % len(INTERESTING)] if which != 0 else h
        chunks[0][1] = struct.pack(">II", w & 0xFFFFFFFF, h & 0xFFFFFFFF) + chunks[0][1][8:]
    elif op == 1:  # bit depth, colour type, interlace
        body = bytearray(chunks[0][1])
        body[8 + (a % 5)] = (1, 2, 3, 4, 6, 8, 16, 255, 0)[(a >> 3) % 9]
        chunks[0][1] = bytes(body)
    elif op == 2:  # chunk duplication
        chunks.insert(i, [chunks[i][0], chunks[i][1]])
    elif op == 3 and len(chunks) > 1:
        del chunks[i]
    elif op == 4:  # corrupt a chunk's body, CRC fixed
        body = bytearray(chunks[i][1]) or bytearray(b"\0")
        body[a % len(body)] ^= 1 << (b % 8)
        chunks[i][1] = bytes(body)
    elif op == 5:  # an extra ancillary or critical chunk with random content
        kind = (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"acTL", b"fcTL", b"PLTE", b"IDAT", b"tRNS", b"caBX")[a % 11]
        rnd = random.Random(a)
        body = bytes(rnd.getrandbits(8) for _ in range(b % 96))
        if kind == b"zTXt" and b % 2:
            body = b"k\0\0" + zlib.compress(b"A" * (1 << 20))  # a text bomb: 1 MiB from 1 kB
        chunks.insert(1 + i % max(len(chunks) - 1, 1), [kind, body])
    else:  # a truncated chunk
        chunks[i][1] = chunks[i][1][: a % (len(chunks[i][1]) + 1)]
    return _png_join(chunks)


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the marker segments before the scan data."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        out.append((i, n + 2))
        if marker == 0xDA:
            break
        i += n + 2
    return out


def m_jpeg(data: bytes, a: int, b: int, ctx) -> bytes:
    segs = _jpeg_segments(data)
    if not segs:
        return m_interesting(data, a, b, ctx)
    op = b % 5
    if op == 0:  # SOF: precision, height, width, components
        for off, n in segs:
            if data[off + 1] in (0xC0, 0xC1, 0xC2, 0xC3):
                field_at = off + 4 + (0, 1, 3, 5)[a % 4]
                width = 1 if a % 4 in (0, 3) else 2
                v = INTERESTING[(a >> 2) % len(INTERESTING)] & ((1 << (8 * width)) - 1)
                return data[:field_at] + v.to_bytes(width, "big") + data[field_at + width:]
        return data
    off, n = segs[a % len(segs)]
    if op == 1:  # segment duplication
        return data[:off + n] + data[off:off + n] + data[off + n:]
    if op == 2:  # segment removal
        return data[:off] + data[off + n:]
    if op == 3:  # a lying length field
        v = INTERESTING[(a >> 3) % len(INTERESTING)] & 0xFFFF
        return data[:off + 2] + v.to_bytes(2, "big") + data[off + 4:]
    body_at = off + 4 + (a >> 5) % max(n - 4, 1)  # a byte inside the segment (tables, EXIF)
    if body_at >= len(data):
        return data
    return data[:body_at] + bytes([data[body_at] ^ (1 << (b % 8))]) + data[body_at + 1:]


def _set_int(data: bytes, at: int, width: int, value: int, order: str = "little") -> bytes:
    if at + width > len(data):
        return data
    return data[:at] + (value & ((1 << (8 * width)) - 1)).to_bytes(width, order) + data[at + width:]


def _big(a: int) -> int:
    return INTERESTING[a % len(INTERESTING)]


def m_header(data: bytes, a: int, b: int, ctx) -> bytes:
    """Header fields of the format at hand: dimensions, depths, offsets and counts."""
    kind = ctx["kind"]
    v = _big(a)
    if kind == "gif":
        fields_ = [(6, 2), (8, 2), (10, 1), (11, 1)]
        desc = data.find(b"\x2c", 13)
        if desc > 0:
            fields_ += [(desc + 1, 2), (desc + 3, 2), (desc + 5, 2), (desc + 7, 2), (desc + 9, 1), (desc + 10, 1)]
        at, width = fields_[b % len(fields_)]
        return _set_int(data, at, width, v)
    if kind == "bmp":
        at, width = [(2, 4), (10, 4), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2), (30, 4), (34, 4), (46, 4)][b % 10]
        if at in (18, 22) and (a >> 6) % 2:
            v = -v  # negative height: top-down; negative width: nonsense
        return _set_int(data, at, width, v & 0xFFFFFFFF)
    if kind == "tiff":
        return _tiff_field(data, a, b)
    if kind == "webp":
        at, width = [(4, 4), (16, 4), (20, 4), (24, 3), (27, 3), (26, 2), (28, 2), (21, 4)][b % 8]
        return _set_int(data, at, width, v)
    if kind == "ppm":
        m = re.match(rb"(P\d)(\s+)(\d+)(\s+)(\d+)(\s+)(\d+)?", data)
        if not m:
            return data
        w, h, mx = m.group(3), m.group(5), m.group(7) or b""
        which = b % 3
        new = str(v).encode()
        if which == 0:
            w = new
        elif which == 1:
            h = new
        elif mx:
            mx = str((1, 255, 256, 65535, 65536, 0)[a % 6]).encode()
        return m.group(1) + m.group(2) + w + m.group(4) + h + (m.group(6) + mx if mx else b"") + data[m.end():]
    if kind == "ico":
        at, width = [(4, 2), (6, 1), (7, 1), (8, 1), (10, 2), (12, 2), (14, 4), (18, 4)][b % 8]
        return _set_int(data, at, width, v)
    if kind == "png":
        return m_png(data, a, b * 7, ctx)  # op 0: IHDR dimensions
    if kind == "jpeg":
        return m_jpeg(data, a, b * 5, ctx)  # op 0: SOF fields
    return m_interesting(data, a, b, ctx)


def _tiff_field(data: bytes, a: int, b: int) -> bytes:
    if data[:2] not in (b"II", b"MM") or len(data) < 8:
        return m_interesting(data, a, b, {})
    order = "little" if data[:2] == b"II" else "big"
    fmt = "<" if order == "little" else ">"
    ifd = struct.unpack(fmt + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return _set_int(data, 4, 4, _big(a), order)
    n = struct.unpack(fmt + "H", data[ifd:ifd + 2])[0]
    if not n:
        return data
    entry = ifd + 2 + 12 * (a % n)
    if entry + 12 > len(data):
        return data
    part = b % 4
    if part == 0:  # the value (dimensions, offsets, counts, compression...)
        return _set_int(data, entry + 8, 4, _big(a >> 4), order)
    if part == 1:  # the count
        return _set_int(data, entry + 4, 4, _big(a >> 4), order)
    if part == 2:  # the type
        return _set_int(data, entry + 2, 2, (a >> 4) % 20, order)
    return _set_int(data, ifd, 2, _big(a >> 4), order)  # the entry count


def _zip_records(data: bytes) -> tuple[list[int], list[int], int]:
    """Offsets of the local headers, central directory entries and the end record."""
    return ([m.start() for m in re.finditer(b"PK\x03\x04", data)], [m.start() for m in re.finditer(b"PK\x01\x02", data)],
            data.rfind(b"PK\x05\x06"))


def m_zip(data: bytes, a: int, b: int, ctx) -> bytes:
    local, central, end = _zip_records(data)
    op = b % 9
    v = _big(a >> 3)
    if op <= 3 and central:  # central directory: sizes, method, flags, offsets, name length
        at = central[a % len(central)]
        field_at, width = [(8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4), (38, 4)][(a >> 1) % 9]
        if field_at == 10:
            v = (0, 8, 12, 14, 99, 1)[a % 6]
        if field_at == 24 and a % 2 and at + 28 <= len(data):  # declares less, or a little more, than it holds
            size = struct.unpack("<I", data[at + 24:at + 28])[0]
            v = max(size // (2 + a % 5), 0) if a % 4 == 1 else size + 1 + a % 1000
        return _set_int(data, at + field_at, width, v)
    if op == 4 and local:  # local headers the same way
        at = local[a % len(local)]
        field_at, width = [(6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)][(a >> 1) % 7]
        return _set_int(data, at + field_at, width, v)
    if op == 5 and end >= 0:  # the end record: counts, directory size and offset, comment length
        field_at, width = [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2), (4, 2)][(a >> 1) % 6]
        return _set_int(data, end + field_at, width, v)
    if op == 6:  # rebuild with a mutated image member, a hostile name or a nested archive
        return _rebuild_zip(data, a, b, ctx)
    if op == 7 and central and central[a % len(central)] + 30 <= len(data):  # rename, same length
        at = central[a % len(central)]
        n = struct.unpack("<H", data[at + 28:at + 30])[0]
        name = bytearray(data[at + 46:at + 46 + n])
        if name:
            evil = (b"../", b"/", b"\n", b"\x1b", b"::", b"\\")[a % 6]
            name[:len(evil)] = evil[:len(name)]
            return data[:at + 46] + bytes(name) + data[at + 46 + n:]
        return data
    return m_duplicate(data, a, b, ctx)


def _rebuild_zip(data: bytes, a: int, b: int, ctx) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    except Exception:
        return data
    if not members:
        return data
    i = a % len(members)
    name, blob = members[i]
    choice = b % 4
    if choice == 0:
        members[i] = (name, mutate_image_bytes(blob, a, b, ctx))
    elif choice == 1:
        members.append(((b"../../escape.png", b"/abs/x.png", b"dir/../../y.png", b"C:/win.png",
                         b"a\nb.png")[a % 5].decode(), blob))
    elif choice == 2:
        members.append(("inner.zip", _zip(members[:2])))
    else:
        members.append((name, blob))  # a duplicated name
    return _zip(members, (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)[a % 2])


def mutate_image_bytes(blob: bytes, a: int, b: int, ctx) -> bytes:
    op = (m_bitflip, m_truncate, m_interesting, m_insert, m_png, m_jpeg)[a % 6]
    return op(blob, a >> 3, b, ctx)


def _tar_headers(data: bytes) -> list[int]:
    return [m.start() - 257 for m in re.finditer(b"ustar", data) if m.start() >= 257 and (m.start() - 257) % 512 == 0]


def _tar_checksum(header: bytearray) -> None:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)


def m_tar(data: bytes, a: int, b: int, ctx) -> bytes:
    """Tar header fields with the checksum fixed (most of the time), on the tar inside a tar.gz too."""
    gz = data[:2] == b"\x1f\x8b"
    if gz:
        if b % 5 == 0:  # the gzip layer itself: flags, sizes, deflate bits
            return (m_bitflip, m_truncate, m_interesting)[a % 3](data, a >> 2, b, ctx)
        try:
            data = gzip.decompress(data)
        except Exception:
            return data
    headers = _tar_headers(data)
    if not headers:
        out = m_duplicate(data, a, b, ctx)
    else:
        at = headers[a % len(headers)]
        h = bytearray(data[at:at + 512])
        op = (b >> 3) % 8
        if op == 0:  # the size: smaller, larger, huge, base-256
            size = int(h[124:135].strip(b"\0 ") or b"0", 8) if h[124:135].strip(b"\0 ").isdigit() else 0
            choice = a % 6
            if choice == 5:
                h[124:136] = b"\xff" * 11 + bytes([0xFE - a % 8])  # base-256, negative
            elif choice == 0:
                h[124:136] = b"%011o\0" % max(size // 2, 0)
            elif choice == 1:
                h[124:136] = b"%011o\0" % (size + 512 * (1 + a % 4))
            elif choice == 2:
                h[124:136] = b"%011o\0" % min(_big(a >> 3), 0o77777777777)
            elif choice == 3:
                h[124:136] = b"\x80" + (1 << 62).to_bytes(11, "big")  # base-256: 4 EiB
            else:
                h[124:136] = b"77777777777\0"
        elif op == 1:  # the type: links, devices, FIFOs, long names, pax, sparse, unknown
            h[156:157] = b"0123456LKxgSVZ"[a % 14:a % 14 + 1]
            if h[156:157] in (b"1", b"2"):
                h[157:257] = ((b"../../etc/passwd", b"/etc/passwd", b"loop.png", h[0:100].rstrip(b"\0"))[a % 4]
                              .ljust(100, b"\0"))
        elif op == 2:  # the name
            evil = (b"../../x.png", b"/abs/x.png", b"a/../../b.png", b"c\n.png", b"./.", b"")[a % 6]
            h[0:100] = evil.ljust(100, b"\0")
        elif op == 3:  # mode, uid, mtime
            h[100 + 8 * (a % 3):107 + 8 * (a % 3)] = b"7777777"
        elif op == 4:  # the prefix field (ustar)
            h[345:500] = (b"../" * 40)[:155]
        elif op == 5:  # duplicate a member (header and data)
            size = len(data) - at
            return _gz(data[:at] + data[at:at + min(size, 1024)] + data[at:], gz)
        elif op == 6:  # a member's data mutated (an image, if it is one)
            body_at = at + 512
            size = int(h[124:135].strip(b"\0 ") or b"0", 8) if h[124:135].strip(b"\0 ").isdigit() else 0
            if 0 < size and body_at + size <= len(data):
                blob = mutate_image_bytes(data[body_at:body_at + size], a, b, ctx)[:size].ljust(size, b"\0")
                return _gz(data[:body_at] + blob + data[body_at + size:], gz)
        else:  # a bad checksum
            h[148:156] = b"0000000\0"
            return _gz(data[:at] + bytes(h) + data[at + 512:], gz)
        if (a >> 7) % 8:
            _tar_checksum(h)
        out = data[:at] + bytes(h) + data[at + 512:]
    return _gz(out, gz)


def _gz(data: bytes, gz: bool) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0) if gz else data


def m_multipart(data: bytes, a: int, b: int, ctx) -> bytes:
    op = b % 8
    sep = f"--{BOUNDARY}".encode()
    if op == 0:  # no closing boundary
        return data.replace(f"--{BOUNDARY}--".encode(), b"")
    if op == 1:  # too many parts
        part = data[: data.find(sep, len(sep))] if data.count(sep) > 1 else data
        return part * (2 + a % 40) + f"--{BOUNDARY}--\r\n".encode()
    if op == 2:  # an unknown field, a hostile filename, a huge header
        i = data.find(b"Content-Disposition")
        evil = (b'Content-Disposition: form-data; name="other"\r\n', b'Content-Disposition: form-data; name="file"; '
                b'filename="\x1b[31m\r\n.png"\r\n', b"X-Long: " + b"a" * (4096 + a % 100000) + b"\r\n",
                b'Content-Disposition: form-data; name="threshold"\r\n\r\n' + b"9" * 2000 + b"\r\n")[a % 4]
        return data[:i] + evil + data[i:] if i >= 0 else data
    if op == 3:  # the part boundary changed
        return data.replace(sep, sep[:-1] + b"X", 1 + a % 2)
    if op == 4:  # a file part's data mutated as an image
        i = data.find(b"\r\n\r\n")
        j = data.find(b"\r\n" + sep, i + 4)
        if i < 0 or j < 0:
            return data
        return data[:i + 4] + mutate_image_bytes(data[i + 4:j], a, b, ctx) + data[j:]
    if op == 5:  # header without its value, a lone CR
        return data.replace(b"\r\n", b"\r", 1 + a % 3)
    return (m_bitflip, m_insert, m_delete, m_truncate, m_duplicate)[a % 5](data, a >> 3, b, ctx)


def m_json(data: bytes, a: int, b: int, ctx) -> bytes:
    op = b % 8
    if op == 0:  # deep nesting
        depth = (10, 900, 5000, 100_000)[a % 4]
        return b'{"images": ' + b"[" * depth + b"]" * depth + b"}"
    if op == 1:  # shapes of the wrong type
        return (b'{"images": {}}', b'{"images": [1, 2]}', b'{"images": [{"data": 5}]}', b'[]', b'"x"',
                b'{"images": [{"data": "AAAA", "name": 3}]}', b'{"images": [{"data": "AAAA", "x": 1}]}',
                b'{"images": [{"data": "!!!"}]}', b'{"images": [{"data": "AAAA"}], "threshold": 1e999}',
                b'{"images": [{"data": "AAAA"}], "threshold": NaN}', b'{"images": [{"data": "AAAA"}], "threshold": true}',
                b'{"images": [{"data": "AAAA"}], "model": []}', b'{"images": [{"data": "data:,"}]}',
                b'\xef\xbb\xbf{"images": []}', b'{"images": [' + b'{"data": "AAAA"},' * 40 + b'{"data": "AAAA"}]}',
                b'{"images": [{"data": "AAAA"}], "verdict": 1}')[a % 16]
    if op == 2:  # the image inside mutated
        try:
            doc = json.loads(data)
            blob = base64.b64decode(doc["images"][0]["data"].split(",")[-1])
            doc["images"][0]["data"] = base64.b64encode(mutate_image_bytes(blob, a, b, ctx)).decode()
            return json.dumps(doc).encode()
        except Exception:
            return data
    if op == 3:  # invalid UTF-8, control characters in names
        return data.replace(b'"a.png"', (b'"\xff\xfe.png"', b'"\\u0000\\n\\u001b.png"', b'"' + b"n" * 5000 + b'"')[a % 3])
    return (m_bitflip, m_insert, m_delete, m_truncate, m_duplicate)[a % 5](data, a >> 3, b, ctx)


GENERIC = {"bitflip": m_bitflip, "byteset": m_byteset, "truncate": m_truncate, "insert": m_insert,
           "delete": m_delete, "duplicate": m_duplicate, "interesting": m_interesting, "splice": m_splice}
AWARE = {"png": m_png, "jpeg": m_jpeg, "header": m_header, "zip": m_zip, "tar": m_tar,
         "multipart": m_multipart, "json": m_json}
OPS = tuple(GENERIC) + ("aware", "aware", "header")
"""Mutation names drawn by Hypothesis; "aware" picks the kind's own structure-aware mutator."""


def apply_ops(data: bytes, kind: str, ops: list[tuple[str, int, int]], ctx: dict) -> bytes:
    """The mutations in order. A mutator that cannot apply to what earlier ones left (a structure
    they destroyed) is skipped and counted in `ctx["skipped"]`: the harness's limitation, not realjudge's."""
    for name, a, b in ops:
        if name in GENERIC:
            fn = GENERIC[name]
        elif name == "header":
            fn = m_header if kind in IMAGE_KINDS else AWARE.get(kind.split(".")[0], m_interesting)
        else:
            fn = AWARE.get({"tar.gz": "tar"}.get(kind, kind), m_header)
        try:
            data = fn(data, a, b, ctx)
        except Exception as err:  # noqa: BLE001  (the harness's own mutators, never realjudge code)
            ctx.setdefault("skipped", []).append(f"{fn.__name__}: {type(err).__name__}: {err}")
        if len(data) > 8 << 20:  # mutations never grow an input past 8 MiB
            data = data[: 8 << 20]
    return data


# --------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One input: a kind, a seed of that kind, where it is put (`layout`), and its mutations."""

    kind: str
    seed: int
    layout: int
    mseed: int
    n_ops: int
    index: int = 0

    @property
    def ops(self) -> list[tuple[str, int, int]]:
        """The mutations, derived from `mseed`: (name, a, b), a and b choosing where and how."""
        rnd = random.Random(self.mseed)
        return [(rnd.choice(OPS), rnd.getrandbits(32), rnd.getrandbits(32)) for _ in range(self.n_ops)]

    def to_json(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "layout": self.layout, "mseed": self.mseed, "n_ops": self.n_ops}

    def key(self) -> tuple:
        return (self.kind, self.seed, self.layout, self.mseed, self.n_ops)


BATCH = 8
"""Cases per Hypothesis example: its engine costs a few milliseconds an example, so each draws several."""


def case_strategy(kinds: tuple[str, ...] = KINDS):
    """Hypothesis draws each case's kind, seed, layout, mutation seed and number of mutations."""
    from hypothesis import strategies as st

    one = st.builds(Case, kind=st.sampled_from(kinds), seed=st.integers(0, 63), layout=st.integers(0, 7),
                    mseed=st.integers(0, 2**64 - 1), n_ops=st.integers(1, 5))
    return st.lists(one, min_size=BATCH, max_size=BATCH)


class Hang(BaseException):
    """Raised by the alarm in the code under test: a BaseException, so no `except Exception` swallows it."""


@contextmanager
def time_limit(cpu_seconds: float, wall_seconds: float):
    """Interrupt the block after `cpu_seconds` of this process's CPU time (SIGPROF) or `wall_seconds`
    of wall-clock time (SIGALRM: a block waiting on a FIFO or a lock uses no CPU). CPU time is what
    an input costs; wall time on a shared machine also counts the other processes' turns."""
    def fire(signum, frame):
        raise Hang()

    old = signal.signal(signal.SIGPROF, fire), signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    signal.setitimer(signal.ITIMER_REAL, wall_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old[0])
        signal.signal(signal.SIGALRM, old[1])


WALL_FACTOR = 5.0
"""A stage may take this many times the CPU limit in wall-clock time before it is a hang (waiting)."""


def normalise(msg: str, names: tuple[str, ...] = ()) -> str:
    """A failure reason without its file names, quoted values and numbers: what makes reasons distinct."""
    for n in sorted((n for n in names if n), key=len, reverse=True):
        msg = msg.replace(n, "<name>")
    msg = re.sub(r"^<name>.*?: ", "", msg)
    msg = re.sub(r"'[^']*'|\"[^\"]*\"", "<s>", msg)
    msg = re.sub(r"(?<![\w.])(/[^\s:;,()]+)+", "<path>", msg)
    msg = re.sub(r"0x[0-9a-fA-F]+|\b\d+(\.\d+)?\b", "N", msg)
    msg = re.sub(r"\\x[0-9a-f]{2}|\\u[0-9a-f]{4}", "", msg)
    return re.sub(r"\s+", " ", msg).strip()[:200]


def _frame_owner(tb) -> str:
    """The innermost frame inside realjudge (or the innermost at all), as `pkg/file.py:line`."""
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if "/realjudge/" in f.filename.replace("\\", "/")]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    path = f.filename.replace("\\", "/")
    return f"{path.split('/realjudge/')[-1] if '/realjudge/' in path else os.path.basename(path)}:{f.lineno}"


@dataclass
class Results:
    seed: int
    requested: int
    time_limit: float
    tried: int = 0
    by_kind: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    crashes: list = field(default_factory=list)
    crash_count: int = 0
    crash_signatures: dict = field(default_factory=dict)
    known: dict = field(default_factory=dict)
    hangs: list = field(default_factory=list)
    hang_count: int = 0
    tracebacks: list = field(default_factory=list)
    traceback_count: int = 0
    stray_stderr: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    baseline_rss_mib: float = 0.0
    duplicates_skipped: int = 0
    slowest: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    mutations_skipped: dict = field(default_factory=dict)
    harness_errors: int = 0

    def stage(self, name: str) -> dict:
        return self.stages.setdefault(name, {"runs": 0, "ok": 0, "clean_errors": 0, "max_cpu_s": 0.0, "max_wall_s": 0.0,
                                             "total_cpu_s": 0.0})

    def reason(self, stage: str, msg: str, names=()) -> None:
        key = normalise(msg, names)
        per = self.reasons.setdefault(stage, {})
        if key not in per and len(per) >= 2000:  # bounded: a reason the normaliser cannot fold
            key = "(other reasons, past the first 2000 distinct)"
        per[key] = per.get(key, 0) + 1

    def summary(self, complete: bool) -> dict:
        wall = time.time() - self.started
        distinct = {r for per in self.reasons.values() for r in per}
        import hypothesis
        import PIL

        return {
            "tool": "benchmarks/fuzz.py", "engine": f"hypothesis {hypothesis.__version__}", "complete": complete,
            "seed": self.seed, "settings": self.settings, "inputs_requested": self.requested, "inputs_tried": self.tried,
            "duplicates_skipped": self.duplicates_skipped, "time_limit_s": self.time_limit,
            "wall_s": round(wall, 1), "inputs_per_s": round(self.tried / wall, 1) if wall else None,
            "crashes": self.crash_count, "hangs": self.hang_count, "tracebacks": self.traceback_count,
            "known_issues": {f"{k[0]}/{k[1]} at {k[2]}": {"count": v, "why": KNOWN_ISSUES[k]} for k, v in self.known.items()},
            "distinct_clean_reasons": len(distinct),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "baseline_rss_mib": self.baseline_rss_mib,
            "by_kind": dict(sorted(self.by_kind.items())),
            "stages": {k: v | {"max_cpu_s": round(v["max_cpu_s"], 3), "max_wall_s": round(v["max_wall_s"], 3),
                               "total_cpu_s": round(v["total_cpu_s"], 1)}
                       for k, v in sorted(self.stages.items())},
            "crash_signatures": self.crash_signatures, "crash_list": self.crashes, "hang_list": self.hangs,
            "traceback_list": self.tracebacks, "stray_stderr_lines": self.stray_stderr, "slowest": self.slowest,
            "harness_errors": self.harness_errors, "mutations_skipped": self.mutations_skipped,
            "clean_reasons": {s: dict(sorted(per.items(), key=lambda kv: -kv[1])) for s, per in sorted(self.reasons.items())},
            "python": platform.python_version(), "pillow": PIL.__version__, "platform": platform.platform(),
        }


class Fuzzer:
    def __init__(self, results: Results, detect_every: int = 10, cli_every: int = 250, workdir: str | None = None,
                 keep_inputs: int = 3):
        self.r = results
        self.detect_every, self.cli_every, self.keep_inputs = detect_every, cli_every, keep_inputs
        self.images = image_seeds()
        self.archives = archive_seeds(self.images)
        self.bodies = body_seeds(self.images)
        self.good = good_image()
        self.pool = [b for v in self.images.values() for b in v]
        self.tmp = Path(tempfile.mkdtemp(prefix="rj-fuzz-", dir=workdir))
        self.router = None
        self.seen: set[int] = set()
        self.decoded: set[bytes] = set()  # digests decoded for the current case
        self.current: tuple | None = None  # (stage, case, started) for the watchdog

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- building one input

    def build(self, case: Case) -> tuple[bytes, str]:
        ctx = {"kind": case.kind, "pool": self.pool}
        try:
            return self._build(case, ctx)
        finally:
            for why in ctx.get("skipped", []):
                key = normalise(why)
                self.r.mutations_skipped[key] = self.r.mutations_skipped.get(key, 0) + 1

    def _build(self, case: Case, ctx: dict) -> tuple[bytes, str]:
        if case.kind in IMAGE_KINDS:
            seeds = self.images[case.kind]
            data = seeds[case.seed % len(seeds)]
            return apply_ops(data, case.kind, case.ops, ctx), ""
        if case.kind in ARCHIVE_KINDS:
            seeds = self.archives[case.kind]
            data = seeds[case.seed % len(seeds)]
            return apply_ops(data, case.kind, case.ops, ctx), ""
        body, ctype = self.bodies[case.kind][case.seed % len(self.bodies[case.kind])]
        if case.layout == 7:  # the header itself
            ctype = (ctype.split(";")[0], ctype + '; boundary="x"', "text/plain", "", ctype.upper(),
                     "multipart/form-data; boundary=" + "b" * 300)[case.seed % 6]
        return apply_ops(body, case.kind, case.ops, ctx), ctype

    # ---- running

    def run_case(self, case: Case, mix: bool = True) -> None:
        # Hypothesis favours simple values and repeats itself; the drawn mutation seed is mixed with the
        # input's index so that no two inputs share their mutations (and each stays reproducible from its case).
        if mix:
            case.mseed = int.from_bytes(hashlib.blake2b(f"{case.mseed}/{self.r.tried}".encode(), digest_size=8).digest(),
                                        "big")
        key = hash(case.key())
        if key in self.seen:
            self.r.duplicates_skipped += 1
            return
        self.seen.add(key)
        case.index = self.r.tried
        self.r.tried += 1
        self.r.by_kind[case.kind] = self.r.by_kind.get(case.kind, 0) + 1
        try:
            data, ctype = self.build(case)
        except Exception as err:  # a harness bug, not a realjudge one: reported apart, never hidden
            self.r.harness_errors += 1
            self._crash("build", case, b"", err, count=False)
            return
        self.decoded = {hashlib.blake2b(self.good, digest_size=16).digest()} if case.index % 50 else set()
        folder = self.tmp / f"c{case.index % 4}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            if case.kind in BODY_KINDS:
                self._stage("upload", case, data, self._upload, data, ctype)
            elif case.kind in IMAGE_KINDS:
                self._stage("decode", case, data, self._decode, [(data, f"input{EXT[case.kind]}")])
                target = self._stage("layouts", case, data, self._image_layout, case, data, folder)
                if target and case.index % self.detect_every == 0:
                    self._stage("detect", case, data, self._detect, case, [(data, f"input{EXT[case.kind]}")], target)
                if target and case.index % self.cli_every == 0:
                    self._stage("cli", case, data, self._cli, [str(target[0])], target[1])
            else:
                target = self._stage("layouts", case, data, self._archive_layout, case, data, folder)
                if target and case.index % self.detect_every == 0:
                    self._stage("detect", case, data, self._detect, case, None, target)
                if target and case.index % self.cli_every == 0:
                    self._stage("cli", case, data, self._cli, [str(p) for p in target[0]], target[1])
        finally:
            close = getattr(containers, "close_containers", None)  # absent before the limits existed
            close() if close else containers._CONTAINERS.clear()

    def _stage(self, name: str, case: Case, data: bytes, fn, *args):
        st = self.r.stage(name)
        st["runs"] += 1
        t0, c0 = time.perf_counter(), time.process_time()
        self.current = (name, case, time.monotonic(), data)
        out = None
        try:
            with time_limit(self.r.time_limit, WALL_FACTOR * self.r.time_limit):
                out = fn(*args)
        except Hang:
            self._hang(name, case, data, time.process_time() - c0, time.perf_counter() - t0, interrupted=True)
            return None
        except CLEAN as err:  # a stage that fails whole, cleanly (open_source on a hostile folder)
            st["clean_errors"] += 1
            self.r.reason(name, str(getattr(err, "message", err)), self._names())
        except Exception as err:
            self._crash(name, case, data, err)
            return None
        finally:
            self.current = None
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        slow = self.r.slowest.setdefault(name, [])
        if len(slow) < 5 or cpu > slow[-1]["cpu_s"]:
            slow.append({"cpu_s": round(cpu, 3), "wall_s": round(dt, 3), "case": case.to_json(), "bytes": len(data)})
            slow.sort(key=lambda x: -x["cpu_s"])
            del slow[5:]
        st["max_cpu_s"] = max(st["max_cpu_s"], cpu)
        st["max_wall_s"] = max(st["max_wall_s"], dt)
        st["total_cpu_s"] += cpu
        if cpu > self.r.time_limit or dt > WALL_FACTOR * self.r.time_limit:
            self._hang(name, case, data, cpu, dt, interrupted=False)
        else:
            st["ok"] += 1
        return out

    def _names(self) -> tuple[str, ...]:
        return (str(self.tmp),)

    def _record(self, case: Case, data: bytes) -> dict:
        rec = {"case": case.to_json(), "index": case.index, "bytes": len(data)}
        if len(data) <= 64 << 10:
            rec["input_b64"] = base64.b64encode(data).decode()
        return rec

    def _crash(self, stage: str, case: Case, data: bytes, err: BaseException, count: bool = True) -> None:
        where = _frame_owner(err.__traceback__)
        file_ = where.rsplit(":", 1)[0]
        known = (stage, type(err).__name__, file_)
        if known in KNOWN_ISSUES:
            self.r.known[known] = self.r.known.get(known, 0) + 1
            return
        sig = f"{stage}: {type(err).__name__} at {where}"
        self.r.crash_count += count
        n = self.r.crash_signatures.get(sig, 0)
        self.r.crash_signatures[sig] = n + 1
        if n < self.keep_inputs and len(self.r.crashes) < 200:
            self.r.crashes.append(self._record(case, data) | {
                "stage": stage, "signature": sig, "error": f"{type(err).__name__}: {str(err)[:300]}",
                "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-3000:]})

    def _hang(self, stage: str, case: Case, data: bytes, cpu: float, wall: float, interrupted: bool) -> None:
        self.r.hang_count += 1
        if len(self.r.hangs) < 100:
            self.r.hangs.append(self._record(case, data) | {"stage": stage, "cpu_s": round(cpu, 2),
                                                             "wall_s": round(wall, 2), "interrupted": interrupted})

    def _violation(self, what: str) -> None:
        raise AssertionError(what)  # counted as a crash of the stage: a broken invariant

    # ---- stages

    def _decode(self, items: list[tuple[bytes, str]]) -> None:
        for blob, name in items:
            digest = hashlib.blake2b(blob, digest_size=16).digest()
            if digest in self.decoded:  # the same bytes read again through another path: decoded once
                continue
            self.decoded.add(digest)
            try:
                d = decode_bytes(blob, name)
            except CLEAN as err:
                self._check_line(str(err))
                self.r.reason("decode", err.reason if hasattr(err, "reason") else str(err), (name,))
                continue
            px = d.pixels
            if px.ndim != 3 or px.shape[2] != 3 or px.dtype != np.uint8 or 0 in px.shape:
                self._violation(f"decode gave pixels of shape {px.shape} and dtype {px.dtype}")

    def _check_line(self, msg: str) -> None:
        if "\n" in msg or "\r" in msg:
            self._violation(f"an error message of more than one line: {msg[:200]!r}")

    def _image_layout(self, case: Case, data: bytes, folder: Path):
        """The image in a temporary folder of a labelled layout, beside a good one."""
        ext = EXT[case.kind] if case.layout % 5 else (".png", ".jpg", ".webp")[case.seed % 3]  # a wrong extension too
        style = case.layout % 4
        if style == 0:
            bad, good = folder / "fake" / f"x{ext}", folder / "real" / "good.png"
        elif style == 1:
            bad, good = folder / "train" / "FAKE" / f"1 (2){ext}", folder / "train" / "REAL" / "good.png"
        elif style == 2:
            bad, good = folder / f"x{ext}", folder / "good.png"
        else:
            bad, good = folder / "imgs" / f"x{ext}", folder / "imgs" / "good.png"
            (folder / "imgs").mkdir(parents=True)
            (folder / "manifest.csv").write_text(f"path,label\nimgs/x{ext},fake\nimgs/good.png,real\n")
        bad.parent.mkdir(parents=True, exist_ok=True)
        good.parent.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(data)
        good.write_bytes(self.good)
        try:
            srcs = open_source(folder)
        except CLEAN as err:
            self.r.reason("layouts", str(err), self._names())
            srcs = []
        samples, missing = expand_inputs([str(folder)] + ([str(folder / "**" / f"*{ext}")] if case.layout == 5 else []))
        if missing:
            self._violation(f"expand_inputs lost paths that exist: {missing}")
        self._read_all(samples, srcs)
        return folder, [s.locator for s in samples if s.locator.endswith("good.png")]

    def _archive_layout(self, case: Case, data: bytes, folder: Path):
        """The archive beside a good image: containers, layouts, inputs and sample reads."""
        suffix = case.kind if case.layout % 6 else ("tar", "zip", "tar.gz", "tgz")[case.seed % 4]  # a lying suffix too
        path = folder / f"in.{suffix}"
        path.write_bytes(data)
        good = folder / "good.png"
        good.write_bytes(self.good)
        try:
            c = containers.open_container(path)
        except CLEAN as err:
            self.r.reason("layouts", str(err), (str(path),))
            c = None
        if c is not None:
            names = c.names()
            for n in names[:64]:
                try:
                    blob = c.read(n)
                except CLEAN as err:
                    self._check_line(str(err))
                    self.r.reason("layouts", err.reason, ())
                    continue
                if containers.is_image_name(n):
                    self._decode([(blob, c.locator(n))])
        try:
            srcs = open_source(path)
        except CLEAN as err:
            self.r.reason("layouts", str(err), (str(path),))
            srcs = []
        samples, missing = expand_inputs([str(path), str(good)])
        if missing:
            self._violation(f"expand_inputs lost paths that exist: {missing}")
        if not any(s.locator == str(good) for s in samples):
            self._violation("the good image beside the archive was not listed")
        self._read_all(samples[:64], srcs[:64])
        return [path, good], [str(good)]

    def _read_all(self, samples, more) -> None:
        seen = 0
        for s, blob in iter_sample_bytes(list(samples) + list(more)):
            seen += 1
            if isinstance(blob, BaseException):
                if not isinstance(blob, CLEAN):
                    raise blob
                self._check_line(str(blob))
                self.r.reason("layouts", blob.reason if hasattr(blob, "reason") else str(blob), (s.locator,))
                continue
            if containers.is_image_name(s.locator):
                self._decode([(blob, s.locator)])
        if seen != len(samples) + len(more):
            self._violation(f"iter_sample_bytes gave {seen} results for {len(samples) + len(more)} samples")
        for s in list(samples)[:8]:  # the random-access path the pipeline takes
            try:
                s.read_bytes()
            except CLEAN as err:
                self._check_line(str(err))

    def _load_router(self):
        if self.router is None:
            from realjudge.detector import load_for_inputs

            self.router = load_for_inputs(None, device="cpu")
        return self.router

    def _detect(self, case: Case, items, target) -> None:
        from realjudge import pipeline

        router = self._load_router()
        if items is None:
            samples, _ = expand_inputs([str(p) for p in target[0]])
            items = [(s, s.locator) for s in samples[:12]] + [(s, s.locator) for s in samples if s.locator == target[1][0]]
        batch = list(items) + [(self.good, "good.png")]
        records = list(pipeline.run(router, batch, workers=0))
        if len(records) != len(batch):
            self._violation(f"pipeline.run gave {len(records)} records for {len(batch)} inputs")
        for rec, (_, name) in zip(records, batch):
            if rec.error:
                self._check_line(rec.error)
                self.r.reason("detect", rec.error, (name, str(self.tmp)))
            elif not (0.0 <= rec.p_fake <= 1.0) or rec.verdict not in ("fake", "real", "uncertain"):
                self._violation(f"{name}: p_fake {rec.p_fake} verdict {rec.verdict}")
        if records[-1].error:
            self._violation(f"the good image beside a hostile one was not scored: {records[-1].error}")

    def _cli(self, paths: list[str], goods: list[str]) -> None:
        from click.testing import CliRunner

        from realjudge.cli import main

        res = CliRunner().invoke(main, ["detect", *paths, "--format", "jsonl", "--device", "cpu", "--no-progress"])
        out, err = res.stdout, res.stderr
        if "Traceback" in out or "Traceback" in err:
            self.r.traceback_count += 1
            if len(self.r.tracebacks) < 50:
                self.r.tracebacks.append({"paths": paths, "stderr": err[-2000:], "stdout": out[-1000:]})
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            raise res.exception
        if res.exit_code not in (0, 1):
            self._violation(f"realjudge detect exited {res.exit_code}: {err.strip()[-300:]}")
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        errors = [line for line in err.splitlines() if line.startswith("realjudge: error: ")]
        for line in err.splitlines():
            if not line.startswith(("realjudge: error: ", "realjudge: warning: ", "realjudge: note: ")):
                key = normalise(line, (str(self.tmp),))
                self.r.stray_stderr[key] = self.r.stray_stderr.get(key, 0) + 1
        if len(errors) != sum(1 for r in records if r.get("error")):
            self._violation(f"{len(errors)} error lines on stderr for {sum(1 for r in records if r.get('error'))} "
                            f"error records")
        for g in goods:
            rec = next((r for r in records if r["path"] == g), None)
            if rec is None or rec.get("error") or rec.get("verdict") is None:
                self._violation(f"the good image {g} was not scored by realjudge detect: {rec}")
        if res.exit_code != (1 if errors else 0):
            self._violation(f"exit code {res.exit_code} with {len(errors)} error lines")
        for line in errors:
            self.r.reason("cli", line.removeprefix("realjudge: error: "), (str(self.tmp),))

    def _upload(self, body: bytes, ctype: str) -> None:
        if parse_body is None:
            return
        try:
            sub = parse_body(body, ctype, 16)
        except ApiError as err:
            self._check_line(err.message)
            self.r.reason("upload", f"{err.status} {err.message}")
            return
        self._decode([(u.data, u.name) for u in sub.images])


# ---------------------------------------------------------------------------------------------- runs


def _watchdog(fuzzer: Fuzzer, hard_limit: float, out: Path | None, stop: threading.Event) -> None:
    """A stage stuck in C code (where the alarm cannot reach) ends the run, recorded as a hang."""
    while not stop.wait(1.0):
        cur = fuzzer.current
        if cur and time.monotonic() - cur[2] > hard_limit:
            stage, case, started, data = cur
            fuzzer._hang(stage, case, data, float("nan"), time.monotonic() - started, interrupted=False)
            fuzzer.r.hangs[-1]["stuck"] = True
            faulthandler.dump_traceback(file=sys.stderr)
            if out:
                out.write_text(json.dumps(fuzzer.r.summary(complete=False), indent=1))
            print(f"fuzz: stage {stage} stuck for {hard_limit:.0f} s on input {case.index}; stopping", file=sys.stderr)
            os._exit(2)


def run_fuzz(inputs: int, seed: int = 0, time_limit: float = 2.0, detect_every: int = 10, cli_every: int = 250,
             chunk: int = 4000, out: Path | None = None, progress_every: int = 0, kinds: tuple[str, ...] = KINDS,
             checkpoint_every: int = 5000, hard_limit: float | None = None, command: str | None = None) -> dict:
    """Fuzz `inputs` distinct inputs drawn by Hypothesis from `seed`; the result summary (as written to `out`)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    results = Results(seed, inputs, time_limit)
    results.settings = {"command": command, "detect_every": detect_every, "cli_every": cli_every, "chunk": chunk,
                        "kinds": list(kinds), "wall_factor": WALL_FACTOR}
    fuzzer = Fuzzer(results, detect_every, cli_every)
    strategy = case_strategy(tuple(kinds))
    stop = threading.Event()
    dog = threading.Thread(target=_watchdog, args=(fuzzer, hard_limit or max(30.0, 15 * time_limit), out, stop),
                           daemon=True)
    dog.start()
    torch_threads()
    fuzzer._load_router()  # loading the models is not an input's time
    _warm(fuzzer)
    results.baseline_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results.started = time.time()
    last_checkpoint = last_progress = 0
    try:
        round_ = 0
        while results.tried < inputs and round_ < 20 + 4 * (inputs // chunk):
            todo = min(chunk, inputs - results.tried)

            @settings(max_examples=todo // BATCH + 8, database=None, phases=[Phase.generate], deadline=None,
                      suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)
            @hseed(seed * 1_000_003 + round_)
            @given(strategy)
            def one(cases: list[Case]) -> None:
                nonlocal last_progress
                for case in cases:
                    if results.tried >= inputs:
                        return
                    fuzzer.run_case(case)
                if progress_every and results.tried - last_progress >= progress_every:
                    last_progress = results.tried
                    s = results.summary(False)
                    print(f"fuzz: {results.tried}/{inputs} inputs, {s['crashes']} crashes, {s['hangs']} hangs, "
                          f"{s['tracebacks']} tracebacks, {s['distinct_clean_reasons']} reasons, "
                          f"{s['inputs_per_s']}/s, peak RSS {s['peak_rss_mib']} MiB", flush=True)

            one()
            round_ += 1
            if os.environ.get('FUZZ_DEBUG'):
                print('round', round_, results.tried, results.duplicates_skipped, flush=True)
            if out and results.tried - last_checkpoint >= checkpoint_every:
                last_checkpoint = results.tried
                _write(out, results.summary(complete=False))
    finally:
        stop.set()
        fuzzer.close()
    summary = results.summary(complete=results.tried >= inputs)
    if out:
        _write(out, summary)
    return summary


def replay(path: Path, time_limit: float = 2.0) -> dict:
    """Run the crashes and hangs of a result file again, every stage for each (their cases are stored)."""
    doc = json.loads(Path(path).read_text())
    results = Results(doc.get("seed", 0), 0, time_limit)
    fuzzer = Fuzzer(results, detect_every=1, cli_every=1)
    torch_threads()
    fuzzer._load_router()
    _warm(fuzzer)
    try:
        for entry in doc.get("crash_list", []) + doc.get("hang_list", []):
            fuzzer.run_case(Case(**entry["case"]), mix=False)
    finally:
        fuzzer.close()
    return results.summary(complete=True)


def _warm(fuzzer: Fuzzer) -> None:
    """One good input through every stage first, so that imports and model loading are not timed."""
    from click.testing import CliRunner

    from realjudge.cli import main

    folder = fuzzer.tmp / "warm"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "good.png").write_bytes(fuzzer.good)
    CliRunner().invoke(main, ["detect", str(folder), "--format", "jsonl", "--device", "cpu", "--no-progress"])
    if parse_body is not None:
        body, ctype = fuzzer.bodies["multipart"][0]
        parse_body(body, ctype, 16)
    shutil.rmtree(folder, ignore_errors=True)


def _write(out: Path, summary: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=2000, help="distinct inputs to try")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=2.0,
                    help=f"CPU seconds per stage of one input (and {WALL_FACTOR:g}x that in wall time); over it is a hang")
    ap.add_argument("--out", type=Path, default=Path("fuzz-results.json"))
    ap.add_argument("--detect-every", type=int, default=None,
                    help="score every Nth input through pipeline.run (default: 10, or inputs/5000 for long runs)")
    ap.add_argument("--cli-every", type=int, default=None,
                    help="run every Nth input through `realjudge detect` (default: 250, or inputs/200 for long runs)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {', '.join(KINDS)}")
    ap.add_argument("--chunk", type=int, default=4000, help="inputs per Hypothesis run (each with its own seed)")
    ap.add_argument("--progress-every", type=int, default=1000)
    ap.add_argument("--replay", type=Path, default=None, help="rerun the crashes and hangs of this result file")
    args = ap.parse_args(argv)
    if args.replay:
        s = replay(args.replay, args.time_limit)
        print(json.dumps({k: s[k] for k in ("inputs_tried", "crashes", "hangs", "crash_signatures", "stages")}, indent=1))
        return 1 if s["crashes"] or s["hangs"] else 0
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    # Decode and the data layer see every input; the model stages (tens of milliseconds each) a sample, so
    # that 100,000 inputs fit in well under an hour on two shared cores (about 5,000 detect and 200 CLI runs).
    detect_every = args.detect_every or max(10, args.inputs // 5000)
    cli_every = args.cli_every or max(250, args.inputs // 200)
    s = run_fuzz(args.inputs, args.seed, args.time_limit, detect_every, cli_every, args.chunk, args.out,
                 args.progress_every, kinds, command=" ".join(["python", "benchmarks/fuzz.py", *(argv or sys.argv[1:])]))
    print(json.dumps({k: s[k] for k in ("inputs_tried", "crashes", "hangs", "tracebacks", "known_issues",
                                        "distinct_clean_reasons", "peak_rss_mib", "wall_s", "inputs_per_s")}, indent=1))
    print(f"fuzz: wrote {args.out}")
    return 1 if s["crashes"] or s["hangs"] or s["tracebacks"] else 0


def torch_threads() -> None:
    """One scoring thread: the fuzzer shares a small machine, and a batch of two needs no more."""
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:
        pass


if __name__ == "__main__":
    sys.exit(main())
