"""Where metadata sits in the file: only blocks inside the container's real structure count.

PNG is walked chunk by chunk here, because a provenance reader must know *where* a text chunk is:
a chunk after IEND, or one whose CRC does not match, is not part of the image and is reported,
never read as a generator's chunk. Pillow's PNG reader hides that position and decodes the pixels
again to reach text after IDAT. JPEG, WebP, TIFF and the rest go through Pillow's header parser
(no pixels decoded), which stops at the image data the way a viewer does.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field

from PIL import Image

from .findings import Finding, failure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 100_000
"""More chunks than any real PNG has; past it the walk stops (a file of empty chunks is a hang otherwise)."""
MAX_TEXT_BYTES = 1 << 20
"""One text chunk, decompressed. Generation parameters and ComfyUI graphs are tens of kB."""
MAX_TEXT_TOTAL = 8 << 20
MAX_XMP_BYTES = 1 << 20
MAX_EXIF_BYTES = 1 << 18
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


@dataclass
class Text:
    key: str
    value: str
    chunk: str


@dataclass
class Metadata:
    format: str | None = None
    texts: list[Text] = field(default_factory=list)
    xmp: list[bytes] = field(default_factory=list)
    exif: bytes | None = None
    c2pa_marker: bool = False
    problems: list[Finding] = field(default_factory=list)


def collect(data: bytes, header: dict | None = None) -> Metadata:
    """Where the metadata sits in `data`; `header` (`pillow_header` of the same bytes, as the decoder
    kept it) saves parsing a non-PNG header again."""
    meta = Metadata(c2pa_marker=b"c2pa" in data)  # every C2PA manifest store is a JUMBF box labelled `c2pa`
    if data.startswith(PNG_SIGNATURE):
        meta.format = "PNG"
        _walk_png(data, meta)
    elif header is not None:
        _from_header(header, meta)
    else:
        _from_pillow(data, meta)
    return meta


def _walk_png(data: bytes, meta: Metadata) -> None:
    pos, n, text_total = len(PNG_SIGNATURE), 0, 0
    while pos + 12 <= len(data):
        n += 1
        if n > MAX_CHUNKS:
            meta.problems.append(failure("png_structure", f"more than {MAX_CHUNKS} chunks; the rest is not read"))
            return
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            meta.problems.append(failure("png_structure", f"chunk {kind!r} at byte {pos} runs past the end of the file"))
            return
        body = data[pos + 8:end - 4]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4:end])[0]:
            # A chunk written by hand into a file rarely gets its CRC right; a decoder would refuse it.
            meta.problems.append(failure("png_structure", f"chunk {kind.decode('latin-1')!r} at byte {pos} has a wrong CRC; ignored"))
        elif kind in TEXT_CHUNKS:
            text = _png_text(kind, body, meta)
            if text is not None:
                text_total += len(text.value)
                if text_total > MAX_TEXT_TOTAL:
                    meta.problems.append(failure("png_text", f"text chunks over {MAX_TEXT_TOTAL >> 20} MiB in all; the rest is not read"))
                    return
                if text.key == "XML:com.adobe.xmp":  # XMP's home in PNG (XMP spec part 3)
                    meta.xmp.append(text.value.encode("utf-8"))
                else:
                    meta.texts.append(text)
        elif kind == b"eXIf":
            meta.exif = body if len(body) <= MAX_EXIF_BYTES else _too_big(meta, "exif", len(body), MAX_EXIF_BYTES)
        pos = end
        if kind == b"IEND":
            break
    trailing = len(data) - pos
    if trailing > 0:
        hidden = sum(data.count(k, pos) for k in TEXT_CHUNKS)
        meta.problems.append(Finding("png_after_iend", "unknown", "hint", {
            "bytes": trailing, "text_chunks": hidden,
            "note": "data after IEND is outside the image; it is not read as metadata"}))


def _png_text(kind: bytes, body: bytes, meta: Metadata) -> Text | None:
    key, sep, rest = body.partition(b"\0")
    if not sep or not 1 <= len(key) <= 79:
        meta.problems.append(failure("png_text", f"{kind.decode()} chunk with no valid keyword; ignored"))
        return None
    name = key.decode("latin-1")
    signal = "xmp" if name == "XML:com.adobe.xmp" else "png_text"
    try:
        if kind == b"tEXt":
            raw, encoding = rest, "latin-1"
        elif kind == b"zTXt":
            raw, encoding = _inflate(rest[1:]), "latin-1"
        else:
            compressed = rest[0]  # rest[1], the method, can only be zlib; _inflate refuses anything else
            _lang, _, rest = rest[2:].partition(b"\0")
            _translated, _, raw = rest.partition(b"\0")
            raw = _inflate(raw) if compressed else raw
            encoding = "utf-8"
    except (ValueError, IndexError, zlib.error) as err:
        meta.problems.append(failure(signal, f"{kind.decode()} chunk {name!r}: {err}"))
        return None
    if len(raw) > MAX_TEXT_BYTES:
        meta.problems.append(failure(signal, f"{kind.decode()} chunk {name!r} is over {MAX_TEXT_BYTES >> 20} MiB; not read"))
        return None
    return Text(name, raw.decode(encoding, errors="replace"), kind.decode())


def _inflate(raw: bytes) -> bytes:
    """zlib with an output cap: a 1 kB chunk can inflate to gigabytes."""
    d = zlib.decompressobj()
    out = d.decompress(raw, MAX_TEXT_BYTES + 1)
    if len(out) > MAX_TEXT_BYTES:
        raise ValueError(f"inflates to more than {MAX_TEXT_BYTES >> 20} MiB; not read")
    return out


def _too_big(meta: Metadata, signal: str, size: int, limit: int) -> None:
    meta.problems.append(failure(signal, f"{size} bytes, over the {limit} byte limit; not read"))
    return None


def pillow_header(im: Image.Image) -> dict:
    """The metadata blocks Pillow parsed from an opened image's header (before any pixel is decoded):
    what `collect` reads for every format but PNG. The decoder keeps it, so that provenance does not
    parse the header a second time."""
    xmp = im.info.get("xmp") or (im.tag_v2.get(700) if hasattr(im, "tag_v2") else None)
    return {"format": im.format, "xmp": xmp, "exif": im.info.get("exif")}


def _from_pillow(data: bytes, meta: Metadata) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = pillow_header(Image.open(io.BytesIO(data)))  # header and metadata segments only; no pixels
    except Exception:
        return  # not an image Pillow knows: decode() reports that, provenance has nothing to add
    _from_header(header, meta)


def _from_header(header: dict, meta: Metadata) -> None:
    meta.format = header.get("format")
    xmp = header.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if isinstance(xmp, (bytes, bytearray)):
        if len(xmp) > MAX_XMP_BYTES:
            _too_big(meta, "xmp", len(xmp), MAX_XMP_BYTES)
        else:
            meta.xmp.append(bytes(xmp))
    exif = header.get("exif")
    if isinstance(exif, (bytes, bytearray)):
        meta.exif = bytes(exif) if len(exif) <= MAX_EXIF_BYTES else _too_big(meta, "exif", len(exif), MAX_EXIF_BYTES)
