"""The work done on an inference thread: parse the body, decode, score or explain.

Images are decoded and scored one at a time, so a worker holds at most one decoded image and
each result carries its own decode and model times.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from typing import Any, Iterator, Sequence

import numpy as np

from .. import pipeline
from ..calibrate import check_threshold
from ..detector import Detector, load, load_for_inputs
from ..errors import DecodeError, RealjudgeError, UsageError
from ..provenance import combine
from ..router import Router
from .uploads import ApiError, Submission, Upload, parse_body


def load_models(models: Sequence[str] | None, device: str = "auto", threshold: float | None = None,
                runtime: str = "torch") -> Router:
    """The shipped detectors (routed by image size) when `models` is empty, else the named bundles,
    the first one answering requests that name no model; each model step on `runtime`."""
    if not models:
        return load_for_inputs(None, device, threshold, runtime=runtime)
    detectors: dict[str, Detector] = {}
    for spec in models:
        det = load(spec, device, threshold, runtime=runtime)
        if det.name in detectors:
            raise UsageError(f"two models are named {det.name!r} ({spec}); a server needs distinct names")
        detectors[det.name] = det
    first = next(iter(detectors))
    return Router(detectors, first, first)


class SharedLock:
    """Any number of holders of `shared()` at once, or one holder of `exclusive()` alone. A waiting
    exclusive holder goes first: new shared holders wait behind it, so it cannot be starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._waiting:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class Models:
    """The loaded detectors, one router per way a request can ask (by size, or a named model), and
    one `SharedLock` per network.

    Scoring only reads the network, so scoring jobs share it and run on every worker at once. Grad-CAM
    hooks a layer of the shared network while it runs, and that hook would capture the activations of
    any prediction made on another thread meanwhile; so an explanation holds its network alone.
    """

    def __init__(self, router: Router):
        self.router = router
        self.named = {name: router.only(name) for name in router.detectors}
        self.locks = {name: SharedLock() for name in router.detectors}

    @property
    def detectors(self) -> dict[str, Detector]:
        return self.router.detectors

    def router_for(self, model: str | None) -> Router:
        """Route by image size (no model), or send every image to the named model."""
        if not model:
            return self.router
        if model not in self.named:
            raise ApiError(400, f"unknown model {model!r}; this server has {', '.join(self.detectors)}")
        return self.named[model]


def warm_up(router: Router) -> None:
    """One prediction per detector, so the first real request does not pay for lazy set-up."""
    for det in router.detectors.values():
        det.predict(np.zeros((det.policy.size, det.policy.size, 3), np.uint8))


def read_request(models: Models, body: bytes, content_type: str, query: dict[str, Any], max_files: int):
    """Parse the body; a field in the body wins over the same query parameter."""
    sub: Submission = parse_body(body, content_type, max_files)
    model = sub.model if sub.model is not None else query.get("model")
    threshold = sub.threshold if sub.threshold is not None else query.get("threshold")
    router = models.router_for(model)
    mode = sub.verdict if sub.verdict is not None else (query.get("verdict") or "pixels")
    try:
        value = None if threshold is None else check_threshold(threshold)
        pipeline.check_verdict_mode(mode)
    except UsageError as err:
        raise ApiError(400, str(err)) from None
    return sub.images, router, (model or None), value, mode


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _check(deadline: float) -> None:
    """Stop work that nobody waits for any more; the caller answers it like its own timeout."""
    if time.monotonic() > deadline:
        raise TimeoutError("past the request's deadline")


def score(models: Models, upload: Upload, router: Router, named: str | None, threshold: float | None,
          max_pixels: int, verdict: str = "pixels") -> dict:
    """One image to a record dict with its timings; an unreadable image gives a record with `error`
    (naming the model and threshold only when the request named a model)."""
    t0 = time.perf_counter()
    prepared = pipeline.prepare(upload.data, upload.name, router, max_pixels)
    if prepared.model is None:
        rec = pipeline.score(router, [prepared])[0]
        if named:
            rec.model, rec.threshold = named, threshold if threshold is not None else router.detectors[named].threshold
        rec.provenance = rec.provenance_verdict = None
        return rec.to_dict() | {"timings": {"decode_ms": _ms(time.perf_counter() - t0), "model_ms": None,
                                            "provenance_ms": None}}
    t1 = time.perf_counter()
    with models.locks[prepared.model].shared():
        rec = pipeline.score(router, [prepared], threshold)[0]
    if verdict == "combined":
        rec = combine(rec)
    return rec.to_dict() | {"timings": {"decode_ms": _ms(prepared.timings["decode_s"]),
                                        "provenance_ms": _ms(prepared.timings["provenance_s"]),
                                        "model_ms": _ms(time.perf_counter() - t1)}}


def detect_job(models: Models, body: bytes, content_type: str, query: dict, max_files: int, max_pixels: int,
               deadline: float) -> list[dict]:
    images, router, named, threshold, verdict = read_request(models, body, content_type, query, max_files)
    results = []
    for upload in images:
        _check(deadline)
        results.append(score(models, upload, router, named, threshold, max_pixels, verdict))
    return results


def explain_job(models: Models, body: bytes, content_type: str, query: dict, max_files: int, max_pixels: int,
                deadline: float) -> dict:
    """The heat-map overlay of one image as PNG bytes, with its record."""
    images, router, _named, threshold, _verdict = read_request(models, body, content_type, query, max_files)
    if len(images) != 1:
        raise ApiError(400, f"explain takes exactly one image, got {len(images)}")
    try:
        from ..explain import describe_explained, explain_prepared
    except ImportError:
        raise ApiError(501, "explanations are not available in this installation of realjudge") from None
    upload = images[0]
    t0 = time.perf_counter()
    prepared = pipeline.prepare(upload.data, upload.name, router, max_pixels, provenance=False, keep_pixels=True)
    if prepared.model is None:
        raise ApiError(422, prepared.error)
    t1 = time.perf_counter()
    _check(deadline)
    try:
        with models.locks[prepared.model].exclusive():
            record = pipeline.score(router, [prepared], threshold)[0]
            exp = explain_prepared(router.detectors[prepared.model], prepared, record, query.get("method") or "gradcam")
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
