"""The work done on an inference thread: parse the body, decode, score or explain.

Images are decoded and scored one at a time, so a worker holds at most one decoded image and
each result carries its own decode and model times.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from typing import Any, Sequence

import numpy as np

from ..detector import Detector, Record, load
from ..errors import DecodeError, RealjudgeError, UsageError
from ..io.decode import decode
from ..provenance import combine, read as read_provenance, verdict as provenance_verdict
from ..detector import load_for_inputs
from ..router import VERDICT_MODES, Router
from .uploads import ApiError, Submission, Upload, parse_body


def load_models(models: Sequence[str] | None, device: str = "auto", threshold: float | None = None) -> Router:
    """The shipped detectors (routed by image size) when `models` is empty, else the named bundles,
    the first one answering requests that name no model."""
    if not models:
        return load_for_inputs(None, device, threshold)
    detectors: dict[str, Detector] = {}
    for spec in models:
        det = load(spec, device, threshold)
        if det.name in detectors:
            raise UsageError(f"two models are named {det.name!r} ({spec}); a server needs distinct names")
        detectors[det.name] = det
    first = next(iter(detectors))
    return Router(detectors, first, first)


class Models:
    """The loaded detectors, and one lock per network.

    Grad-CAM hooks a layer of the shared network while it runs, and that hook would capture the
    activations of any prediction made on another thread meanwhile; so a network runs one job at a
    time, while parsing and decoding still overlap across workers.
    """

    def __init__(self, router: Router):
        self.router = router
        self.locks = {name: threading.Lock() for name in router.detectors}

    @property
    def detectors(self) -> dict[str, Detector]:
        return self.router.detectors

    def pick(self, det: Detector | None, width: int, height: int) -> Detector:
        return det or self.router.pick(width, height)


def warm_up(router: Router) -> None:
    """One prediction per detector, so the first real request does not pay for lazy set-up."""
    for det in router.detectors.values():
        det.predict(np.zeros((det.policy.size, det.policy.size, 3), np.uint8))


def resolve(models: Models, model: str | None, threshold: Any) -> tuple[Detector | None, float | None]:
    """The detector asked for (None: pick by image size) and the threshold asked for (None: the bundle's)."""
    det = None
    if model:
        if model not in models.detectors:
            raise ApiError(400, f"unknown model {model!r}; this server has {', '.join(models.detectors)}")
        det = models.detectors[model]
    if threshold is None:
        return det, None
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ApiError(400, f"threshold must be a number between 0 and 1, got {threshold!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ApiError(400, f"threshold must be between 0 and 1, got {threshold!r}")
    return det, value


def read_request(models: Models, body: bytes, content_type: str, query: dict[str, Any], max_files: int):
    """Parse the body; a field in the body wins over the same query parameter."""
    sub: Submission = parse_body(body, content_type, max_files)
    model = sub.model if sub.model is not None else query.get("model")
    threshold = sub.threshold if sub.threshold is not None else query.get("threshold")
    det, value = resolve(models, model, threshold)
    mode = sub.verdict if sub.verdict is not None else (query.get("verdict") or "pixels")
    if mode not in VERDICT_MODES:
        raise ApiError(400, f"verdict must be one of {', '.join(VERDICT_MODES)}, got {mode!r}")
    return sub.images, det, value, mode


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _check(deadline: float) -> None:
    """Stop work that nobody waits for any more; the caller answers it like its own timeout."""
    if time.monotonic() > deadline:
        raise TimeoutError("past the request's deadline")


def score(models: Models, upload: Upload, det: Detector | None, threshold: float | None, max_pixels: int,
          verdict: str = "pixels") -> dict:
    """One image to a record dict with its timings; an unreadable image gives a record with `error`."""
    t0 = time.perf_counter()
    try:
        decoded = decode(upload.data, upload.name, max_pixels)
    except DecodeError as err:
        shown = threshold if threshold is not None else (det.threshold if det else None)
        rec = Record(upload.name, error=str(err), model=det.name if det else None, threshold=shown)
        return rec.to_dict() | {"timings": {"decode_ms": _ms(time.perf_counter() - t0), "model_ms": None,
                                            "provenance_ms": None}}
    t1 = time.perf_counter()
    findings = [f.to_dict() for f in read_provenance(upload.data, decoded.pixels)]
    t2 = time.perf_counter()
    h, w = decoded.pixels.shape[:2]
    chosen = models.pick(det, w, h)
    with models.locks[chosen.name]:
        rec = chosen.predict([decoded], names=[upload.name], threshold=threshold)[0]
    rec.provenance, rec.provenance_verdict = findings, provenance_verdict(findings)
    if verdict == "combined":
        rec = combine(rec)
    return rec.to_dict() | {"timings": {"decode_ms": _ms(t1 - t0), "provenance_ms": _ms(t2 - t1),
                                        "model_ms": _ms(time.perf_counter() - t2)}}


def detect_job(models: Models, body: bytes, content_type: str, query: dict, max_files: int, max_pixels: int,
               deadline: float) -> list[dict]:
    images, det, threshold, verdict = read_request(models, body, content_type, query, max_files)
    results = []
    for upload in images:
        _check(deadline)
        results.append(score(models, upload, det, threshold, max_pixels, verdict))
    return results


def explain_job(models: Models, body: bytes, content_type: str, query: dict, max_files: int, max_pixels: int,
                deadline: float) -> dict:
    """The heat-map overlay of one image as PNG bytes, with its record."""
    images, det, threshold, _verdict = read_request(models, body, content_type, query, max_files)
    if len(images) != 1:
        raise ApiError(400, f"explain takes exactly one image, got {len(images)}")
    try:
        from ..explain import describe_explained, explain
    except ImportError:
        raise ApiError(501, "explanations are not available in this installation of realjudge") from None
    upload = images[0]
    t0 = time.perf_counter()
    try:
        decoded = decode(upload.data, upload.name, max_pixels)
    except DecodeError as err:
        raise ApiError(422, str(err)) from None
    t1 = time.perf_counter()
    h, w = decoded.pixels.shape[:2]
    chosen = models.pick(det, w, h)
    lock = models.locks[chosen.name]
    if threshold is not None:
        chosen = Detector(chosen.model, chosen.info, chosen.device, threshold)
    _check(deadline)
    try:
        with lock:
            exp = explain(chosen, decoded, method=query.get("method") or "gradcam")
    except DecodeError as err:
        raise ApiError(422, str(err)) from None
    except (RealjudgeError, ValueError) as err:
        raise ApiError(400, " ".join(str(err).split())) from None
    png = exp.overlay_png()
    timings = {"decode_ms": _ms(t1 - t0), "explain_ms": _ms(time.perf_counter() - t1)}
    return {"record": exp.record.to_dict() | {"timings": timings}, "method": exp.method, "target": exp.target, "png": png,
            "width": exp.overlay.width, "height": exp.overlay.height, "notes": exp.notes, "coverage": exp.coverage,
            "crops": exp.crops, "explained": describe_explained(exp)}


def overlay_json(result: dict) -> dict:
    return {"record": result["record"], "method": result["method"], "target": result["target"], "width": result["width"],
            "height": result["height"], "explained": result["explained"], "coverage": result["coverage"],
            "crops": result["crops"], "notes": result["notes"],
            "overlay_png": base64.b64encode(result["png"]).decode("ascii")}
