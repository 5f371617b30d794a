"""What the web page needs to score an image on the user's device ("score on this device").

The page runs each detector's ONNX graph with onnxruntime-web (vendored under
static/vendor/onnxruntime-web, WebAssembly, single-threaded) and applies the same preprocessing,
view averaging, calibration and verdict rule as `realjudge.pipeline`, in JavaScript
(static/local.js). In that mode the image never leaves the browser: the page fetches only the
model and the JSON below.

- `GET /v1/models/{name}/model.onnx`: the detector's ONNX graph (`realjudge.onnx_bundle`: the
  bundle's own model.onnx, else the cached export, else an export made now, checked against torch
  like `realjudge export --onnx`, written into the cache when it is writable and kept in memory
  for the life of the server either way). The ETag is its sha256.
- `GET /v1/models/{name}/browser`: its input policy, calibration, threshold, verdict rule and the
  routing (size) rule, with the filter constants the JavaScript resampler needs.
"""

from __future__ import annotations

import asyncio
import functools
import mimetypes
import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..errors import ExportError, UsageError
from ..router import SMALL_SIDE, Router

ORT_WEB_VERSION = "1.22.0"
ORT_WEB_DIR = "static/vendor/onnxruntime-web/"
ORT_WEB_SCRIPT = ORT_WEB_DIR + "ort.wasm.min.js"

# Module scripts and streamed WebAssembly compilation need these exact types; some systems' mime
# tables lack them, and Starlette's static files take the type from the mimetypes module.
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")

# PIL's resampling filters as the page reimplements them (src/libImaging/Resample.c): separable,
# one pass per axis, each rounded to 8 bits (which goes first: `pass_order`); the support is scaled
# by the downscale factor (antialiasing); 8-bit images use fixed-point weights, 22 fractional bits.
FILTERS = {"bicubic": {"a": -0.5, "support": 2.0}, "bilinear": {"support": 1.0}, "box": {"support": 0.5},
           "lanczos": {"support": 3.0}, "nearest": {"support": 0.0}}

router = APIRouter()

_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}}}}
_NUMBERS = {"type": "array", "items": {"type": "number"}}
SPEC_RESPONSES = {
    200: {"description": "The rules the page applies, and where the graph is", "content": {"application/json": {
        "schema": {"type": "object", "required": ["name", "model", "input_policy", "calibration", "threshold", "routing"],
                   "properties": {
                       "name": {"type": "string"},
                       "model": {"type": "object", "properties": {"url": {"type": "string"}, "input": {"type": "string"},
                                                                  "output": {"type": "string"}}},
                       "input_policy": {"type": "object", "description": "InputPolicy.to_json()"},
                       "resize_filter": {"type": "object", "nullable": True},
                       "normalise": {"type": "object", "properties": {"mean": _NUMBERS, "std": _NUMBERS}},
                       "aggregate": {"type": "string"},
                       "calibration": {"type": "object", "properties": {
                           "temperature": {"type": "number"}, "offset": {"type": "number"},
                           "threshold": {"type": "number"}, "uncertain_band": _NUMBERS}},
                       "threshold": {"type": "number"},
                       "verdict_rule": {"type": "string"},
                       "routing": {"type": "object", "properties": {"small_side": {"type": "integer"}}},
                       "runtime": {"type": "object"}}}}}},
    404: {"description": "No loaded model has this name", **_ERROR},
}
ONNX_RESPONSES = {
    200: {"description": "The ONNX graph: input `input` N x 3 x S x S float32 (normalised views), output `logit` N",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    304: {"description": "Not modified (If-None-Match matched the ETag, the graph's sha256)"},
    404: {"description": "No loaded model has this name", **_ERROR},
    500: {"description": "The export failed its check against torch", **_ERROR},
    501: {"description": "No graph and no exporter: the `onnx` extra is not installed", **_ERROR},
}


@functools.lru_cache(maxsize=1)
def pass_order() -> str:
    """Which pass this Pillow runs first, found by trying: "horizontal_first", or (newer Pillow,
    13.0 among them) "vertical_first_if_height_shrinks_more" (when the height shrinks by more than
    twice as many pixels as the width). The passes round to 8 bits, so the order changes pixels."""
    import numpy as np
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 3, 3), dtype=np.uint8))
    bicubic = Image.Resampling.BICUBIC
    one = np.asarray(img.resize((32, 32), bicubic))
    horizontal_first = np.asarray(img.resize((32, 40), bicubic).resize((32, 32), bicubic))
    vertical_first = np.asarray(img.resize((3, 32), bicubic).resize((32, 32), bicubic))
    if np.array_equal(one, horizontal_first):
        return "horizontal_first"
    if np.array_equal(one, vertical_first):
        return "vertical_first_if_height_shrinks_more"
    return "unknown"  # pragma: no cover - a Pillow that resamples otherwise: the page refuses to resize


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status)


class OnnxCache:
    """The ONNX graph of each loaded detector, found or exported once (one export at a time per model)."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, str, str]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, det) -> tuple[bytes, str, str]:
        """(graph bytes, sha256, where it came from) for a Detector; blocking (an export takes seconds)."""
        with self._guard:
            lock = self._locks.setdefault(det.name, threading.Lock())
        with lock:
            if det.name not in self._files:
                self._files[det.name] = _find_or_export(det)
            return self._files[det.name]


def _find_or_export(det) -> tuple[bytes, str, str]:
    from .. import onnx_bundle as ob

    if det.onnx is not None:  # the server runs this detector on ONNX Runtime already: the same graph
        return det.onnx.data, det.onnx.entry.get("sha256") or ob._sha256(det.onnx.data), det.onnx.where
    found, _why = ob.find_onnx(det.info.path)
    if found is not None:
        return found.data, found.entry["sha256"], found.where
    path = ob.resolve_bundle_path(det.info.path)
    meta, _weights, _card = ob._read_bundle_files(path)
    data, entry = ob.build(path)  # checked against torch; raises ExportError when the check fails
    try:
        ob._write_into_cache(path, meta, data, entry)
        where = "cache (exported by this server)"
    except UsageError:  # a read-only cache: serve it from memory
        where = "memory (exported by this server; the cache is not writable)"
    return data, entry["sha256"], where


def _onnx_cache(request: Request) -> OnnxCache:
    cache = getattr(request.app.state, "browser_onnx", None)
    if cache is None:
        cache = request.app.state.browser_onnx = OnnxCache()
    return cache


def _detector(request: Request, name: str):
    router: Router = request.app.state.models.router
    return router.detectors.get(name)


def _unknown(request: Request, name: str) -> JSONResponse:
    names = ", ".join(request.app.state.models.router.detectors)
    return _error(404, f"unknown model {name[:80]!r}; this server has {names}")


def routing_rule(router: Router) -> dict:
    """The size rule (`Router.route`) as the page applies it."""
    if router.small == router.large:
        return {"default": router.small, "small": router.small, "large": router.large, "small_side": SMALL_SIDE,
                "rule": f"every image goes to {router.small!r} unless a model is chosen"}
    return {"default": None, "small": router.small, "large": router.large, "small_side": SMALL_SIDE,
            "rule": f"images whose sides are both at most {SMALL_SIDE} px go to {router.small!r}, "
                    f"others to {router.large!r}"}


def _pillow_version() -> str:
    import PIL

    return PIL.__version__


def browser_spec(det, router: Router) -> dict:
    """Everything the page needs to score with `det` as `realjudge.pipeline` does."""
    cal, policy = det.calibration, det.policy
    s = policy.size
    return {
        "name": det.name,
        "model": {"url": f"v1/models/{det.name}/model.onnx", "input": "input", "output": "logit",
                  "input_shape": ["N", 3, s, s], "dtype": "float32", "layout": "NCHW",
                  "output_shape": ["N"]},
        "input_policy": policy.to_json(),
        "resize_filter": ({"name": policy.filter, **FILTERS.get(policy.filter, {}), "precision_bits": 22,
                           "antialias": "support scaled by max(1, input size / output size)",
                           "pass_order": pass_order(), "pillow": _pillow_version()}
                          if policy.kind == "resize" else None),
        "normalise": {"rule": "(x / 255 - mean) / std, float32, per channel (RGB)",
                      "mean": list(policy.mean), "std": list(policy.std)},
        "aggregate": "the mean of the logits of all views (crops, shifted and mirrored copies)",
        "calibration": {"temperature": cal.temperature, "offset": cal.offset, "threshold": cal.threshold,
                        "uncertain_band": list(cal.uncertain_band), "rule": cal.rule,
                        "probability": "p_fake = 1 / (1 + exp(-clip((logit - offset) / temperature, -60, 60)))"},
        "threshold": det.threshold,
        "verdict_rule": ("uncertain when the threshold is the calibrated one and band[0] < p_fake < band[1]; "
                         "else fake when p_fake >= threshold, else real"),
        "routing": routing_rule(router),
        "runtime": {"onnxruntime_web": ORT_WEB_VERSION, "script": ORT_WEB_SCRIPT, "wasm_paths": ORT_WEB_DIR,
                    "threads": 1},
    }


@router.get("/v1/models/{name}/browser", summary="What the page needs to score with a model in the browser",
            responses=SPEC_RESPONSES)
async def model_for_browser(request: Request, name: str):
    """The model's input policy, calibration, threshold, verdict and routing rules, and where its
    ONNX graph is: the page's "score on this device" mode applies them in JavaScript."""
    det = _detector(request, name)
    if det is None:
        return _unknown(request, name)
    return browser_spec(det, request.app.state.models.router)


@router.get("/v1/models/{name}/model.onnx", summary="The model's ONNX graph (exported on first request)",
            response_class=Response, responses=ONNX_RESPONSES)
async def model_onnx(request: Request, name: str):
    det = _detector(request, name)
    if det is None:
        return _unknown(request, name)
    try:
        data, sha, where = await asyncio.to_thread(_onnx_cache(request).get, det)
    except UsageError as err:  # onnx / onnxruntime not installed, or a bundle that cannot be read
        return _error(501, f"{name}: no ONNX graph: {err}")
    except ExportError as err:
        return _error(500, f"{name}: the ONNX export failed: {err}")
    etag = f'"{sha}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Realjudge-Onnx-Source": where}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/octet-stream", headers=headers)
