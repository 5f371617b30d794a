"""Provenance: what an image file says about its own origin, read from the bytes alone.

`read(data, pixels)` returns a list of `Finding`s: C2PA manifests, IPTC DigitalSourceType in XMP,
generator text chunks in PNG, camera EXIF, the Stable Diffusion invisible watermark. It never runs
code from the file, never touches the network and never raises: a reader that fails, or a block
over its byte limit, becomes a finding with `detail["error"]`.

This evidence is kept apart from the pixel score. `verdict(findings)` sums it up in one word, and
`combine(record)` (the explicit `--verdict combined`) lets strong evidence override the pixel
verdict, saying so in the record. Metadata can confirm AI; it never proves a photograph real.
See docs/PROVENANCE.md for what each signal proves and how easily it is stripped or forged.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .findings import DECIDING, SAYS, STRENGTHS, TIME_BUDGET_S, VERDICTS, Finding, failure  # noqa: F401


def read(data: bytes, pixels: np.ndarray | None = None, time_budget: float = TIME_BUDGET_S,
         header: dict | None = None) -> list[Finding]:
    """Every finding in the file's bytes (and, for the watermark, its decoded RGB pixels); `header`: the
    decoder's `Decoded.header` of the same bytes (`container.pillow_header`), when there is one."""
    from . import c2pa_manifest, container, exif, png_chunks, watermark, xmp

    deadline = time.monotonic() + time_budget
    findings: list[Finding] = []
    try:
        meta = container.collect(data, header)
    except Exception as err:  # the container walk is ours and bounded; this guards the unforeseen
        return [failure("container", f"cannot walk the file structure ({type(err).__name__}: {err})")]
    findings += meta.problems
    steps = [("c2pa", lambda: c2pa_manifest.read(data, meta)),
             ("xmp", lambda: xmp.read(meta.xmp)),
             ("png_text", lambda: png_chunks.read(meta.texts)),
             ("exif", lambda: exif.read(meta.exif)),
             ("sd_watermark", lambda: watermark.read(pixels))]
    for signal, step in steps:
        if time.monotonic() > deadline:
            findings.append(failure(signal, f"skipped: the {time_budget:g} s provenance time budget was spent"))
            continue
        try:
            findings += step()
        except Exception as err:  # a hostile file must cost a finding, never the record
            findings.append(failure(signal, f"{type(err).__name__}: {err}"))
    return findings


def verdict(findings: list[Finding] | list[dict] | None) -> str | None:
    """`ai`, `camera`, `conflict` or `none` from the deciding findings; None when nothing was read.

    An AI edit of a camera photograph is `ai`, not a conflict: the camera EXIF and the AI edit
    agree with each other. A fully generated claim beside camera evidence is a `conflict`.
    """
    if findings is None:
        return None
    rows = [f.to_dict() if isinstance(f, Finding) else f for f in findings]
    deciding = [f for f in rows if f["strength"] in DECIDING]
    generated = any(f["says"] == "ai" for f in deciding)
    edited = any(f["says"] == "ai_edited" for f in deciding)
    camera = any(f["says"] == "camera" for f in deciding)
    if generated and camera:
        return "conflict"
    if generated or edited:
        return "ai"
    return "camera" if camera else "none"


def combine(record):
    """The record with strong provenance overriding its pixel verdict, and saying so.

    Only AI evidence overrides (to `fake`): metadata never proves a photograph real. A C2PA
    manifest whose signer is on a configured trust list is the one exception that can make a
    verdict `real`, because then a known signer vouches for the capture.
    """
    if record.error or record.verdict is None:
        return replace(record, verdict_source="pixels")
    rows = record.provenance or []
    if record.provenance_verdict == "ai":
        return replace(record, verdict="fake", verdict_source="provenance", pixel_verdict=record.verdict)
    trusted_camera = any(f["signal"] == "c2pa" and f["strength"] == "signed" and f["says"] == "camera" for f in rows)
    if record.provenance_verdict == "camera" and trusted_camera:
        return replace(record, verdict="real", verdict_source="provenance", pixel_verdict=record.verdict)
    return replace(record, verdict_source="pixels")


def short(findings: list[dict] | None, provenance_verdict: str | None) -> str:
    """A table cell: the verdict and the signals that decided it, e.g. `ai:c2pa+png_parameters`."""
    if findings is None:
        return "-"
    signals = sorted({f["signal"] for f in findings if f["strength"] in DECIDING})
    return provenance_verdict + (":" + "+".join(signals) if signals else "")


def describe(f: dict) -> str:
    """One line per finding for people: `signal  says  (strength)  key=value ...`."""
    parts = [f"{k}={v}" for k, v in f["detail"].items() if v not in (None, "", [], {})]
    return f"{f['signal']:<24} {f['says']:<9} ({f['strength']})  " + "  ".join(parts)
