"""EXIF: the camera's make, model and exposure; the software tag; parameters hidden in text fields.

Read with Pillow's EXIF parser from a block capped in `container`. Camera EXIF is a claim: it is
copied by editors, written by any tool, and stripped by most upload pipelines.
"""

from __future__ import annotations

import re
import warnings

from PIL import Image

from .findings import Finding, failure
from .png_chunks import software_finding

MAKE, MODEL, SOFTWARE, DESCRIPTION, EXIF_IFD = 0x010F, 0x0110, 0x0131, 0x010E, 0x8769
EXPOSURE = {0x829A: "exposure_time", 0x829D: "f_number", 0x8827: "iso", 0x920A: "focal_length", 0xA434: "lens"}
USER_COMMENT = 0x9286
_PARAMETERS = re.compile(r"Steps: \d+,.*Sampler: ", re.S)


def read(block: bytes | None) -> list[Finding]:
    if not block:
        return []
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF; a finding reports it instead
            exif.load(block)
            sub = exif.get_ifd(EXIF_IFD)
    except Exception as err:  # Pillow raises many types on malformed IFDs; all mean "unreadable"
        return [failure("exif", f"unreadable EXIF ({type(err).__name__}: {err})")]
    found = []
    make, model = _text(exif.get(MAKE)), _text(exif.get(MODEL))
    if make or model:
        exposure = {name: _plain(sub[tag]) for tag, name in EXPOSURE.items() if tag in sub}
        # Make and model alone are what an editor or a generator copying EXIF leaves; a capture records its exposure.
        found.append(Finding("exif_camera", "camera", "claim" if exposure else "hint",
                             {"make": make, "model": model, **exposure}))
    if _text(exif.get(SOFTWARE)):
        found.append(software_finding(_text(exif.get(SOFTWARE)), "EXIF Software"))
    for tag, where in ((USER_COMMENT, "EXIF UserComment"), (DESCRIPTION, "EXIF ImageDescription")):
        text = _text(sub.get(tag) if tag == USER_COMMENT else exif.get(tag))
        if text and _PARAMETERS.search(text):
            # A1111 writes its parameters here for JPEG and WebP, but so can anyone, into any photo:
            # this is not a generator's chunk and decides nothing.
            found.append(Finding("exif_parameters", "ai", "hint", {"where": where, "text": text[:2000]}))
    return found


def _text(value) -> str | None:
    if isinstance(value, bytes):
        # UserComment starts with an 8-byte character code (ASCII, UNICODE = UTF-16, JIS).
        head, body = value[:8], value[8:]
        value = body.decode("utf-16-be" if head.startswith(b"UNICODE") else "utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.strip("\0 ").strip()
    return value[:2000] or None


def _plain(value):
    """IFDRational and tuples to JSON-friendly numbers and strings."""
    if isinstance(value, (int, str)):
        return value.strip("\0 ") if isinstance(value, str) else value
    if isinstance(value, tuple):
        return [_plain(v) for v in value][:4]
    try:
        return round(float(value), 6)
    except (TypeError, ValueError, ZeroDivisionError):
        return str(value)[:50]
