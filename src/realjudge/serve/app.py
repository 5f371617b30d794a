"""`create_app`: the HTTP API and the web page, safe under load.

Models are loaded once, at start-up. Each request is admitted by a `Gate` of fixed size (503 with
Retry-After beyond it), its body is read into memory up to a byte limit, and parsing, decoding and
the model run on an inference thread, so the event loop keeps answering. Every refusal is a JSON
`{"error": message, "status": code}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Sequence

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .._version import __version__
from ..router import SMALL_SIDE, Router
from . import browser, openapi
from .gate import Busy, Gate
from .limits import Limits
from .scoring import Models, detect_job, explain_job, load_models, overlay_json, warm_up
from .uploads import ApiError

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("realjudge.serve")

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 # wasm-unsafe-eval: onnxruntime-web's WebAssembly, for scoring on the device
                                 b"script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status, headers=headers)


def create_app(models: Sequence[str] | Router | None = None, limits: Limits | None = None, device: str = "auto",
               threshold: float | None = None) -> FastAPI:
    """The service. `models`: bundle paths or shipped names (None: the shipped detectors, routed by
    image size), or a `Router` already loaded."""
    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        router = models if isinstance(models, Router) else load_models(models, device, threshold)
        warm_up(router)
        app.state.models, app.state.gate = Models(router), Gate(limits.workers, limits.queue,
                                                                limits.inference_niceness)
        log.info("realjudge serve: models %s, limits %s", ", ".join(router.detectors), limits.to_json())
        try:
            yield
        finally:
            app.state.gate.close()

    # Small handlers are coroutines: they answer from the event loop even when every thread is busy.
    app = FastAPI(title="realjudge", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Tell AI-generated images from real photographs. Offline API reference: /docs.")
    _add_error_handlers(app)
    app.add_middleware(_Shed, paths=("/v1/detect", "/v1/explain"))
    app.add_middleware(_SecurityHeaders)  # added last: outermost, so on the shed answers too
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(browser.router)  # the model and its rules for scoring in the browser

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html")

    @app.get("/healthz", summary="Liveness and load")
    async def healthz(request: Request) -> dict:
        """`admitted` requests (uploading, waiting or being scored) out of `capacity`."""
        gate: Gate = request.app.state.gate
        return {"status": "ok", "models": list(request.app.state.models.detectors),
                "admitted": gate.admitted, "capacity": gate.capacity}

    @app.get("/v1/models", summary="Loaded detectors, their calibration and model cards")
    async def list_models(request: Request) -> dict:
        router: Router = request.app.state.models.router
        return {"routing": _routing(router), "models": [_describe(d) for d in router.detectors.values()],
                "limits": limits.to_json()}

    @app.post("/v1/detect", summary="Score one or more images", openapi_extra=openapi.DETECT,
              responses=openapi.DETECT_RESPONSES)
    async def detect(request: Request,
                     model: str | None = Query(None, description="A loaded model (default: picked by image size)."),
                     threshold: float | None = Query(None, ge=0, le=1, description="Decision threshold on p_fake."),
                     verdict: str | None = Query(None, pattern="^(pixels|combined)$",
                                                 description="`combined`: strong provenance may override the pixel verdict.")):
        """Multipart (`file`, repeatable) or JSON with base64 images. 200 when at least one image was
        scored (unreadable ones carry `error`), 422 when none was. Each result carries the file's
        provenance findings beside the pixel verdict."""
        query = {"model": model, "threshold": threshold, "verdict": verdict}
        outcome = await _run(request, limits, detect_job, query)
        if isinstance(outcome, Response):
            return outcome
        results, timings = outcome
        body = {"results": results, "timings": timings}
        if all(r["error"] for r in results):
            first = results[0]["error"]
            message = first if len(results) == 1 else f"none of the {len(results)} images could be scored; first: {first}"
            return error(422, message, **body)
        return body

    @app.post("/v1/explain", summary="Grad-CAM heat map of one image", openapi_extra=openapi.EXPLAIN,
              responses=openapi.EXPLAIN_RESPONSES)
    async def explain(request: Request,
                      model: str | None = Query(None, description="A loaded model (default: picked by image size)."),
                      threshold: float | None = Query(None, ge=0, le=1, description="Decision threshold on p_fake."),
                      method: str = Query("gradcam", max_length=40, description="Explanation method."),
                      fmt: str = Query("png", alias="format", pattern="^(png|json)$",
                                       description="`png`: the overlay; `json`: the record with the overlay in base64.")):
        query = {"model": model, "threshold": threshold, "method": method}
        outcome = await _run(request, limits, explain_job, query)
        if isinstance(outcome, Response):
            return outcome
        result, timings = outcome
        if fmt == "json":
            return overlay_json(result) | {"timings": timings}
        rec = result["record"]
        return Response(result["png"], media_type="image/png", headers={
            "X-Realjudge-Verdict": str(rec["verdict"]), "X-Realjudge-P-Fake": f"{rec['p_fake']:.6f}",
            "X-Realjudge-Threshold": f"{rec['threshold']:.6f}", "X-Realjudge-Model": str(rec["model"]),
            "X-Realjudge-Method": str(result["method"]), "X-Realjudge-Target": str(result["target"]),
            "X-Realjudge-Explained": result["explained"].encode("ascii", "replace").decode("ascii"),
            "X-Realjudge-Coverage": f"{result['coverage']:.4f}"})

    return app


async def _run(request: Request, limits: Limits, job: Callable, query: dict):
    """Admit, read the body, run `job` on an inference thread; a JSON error response on any refusal."""
    gate: Gate = request.app.state.gate
    start = time.monotonic()
    deadline = start + limits.request_timeout
    phase = "upload"
    try:
        with gate.admit():
            async with asyncio.timeout(limits.request_timeout):
                body = await _read_body(request, limits)
                phase = "wait"
                result, waited = await gate.run(job, request.app.state.models, body,
                                                request.headers.get("content-type", ""), query, limits.max_files,
                                                limits.max_pixels, deadline)
    except Busy as busy:
        # Answered before the body is read: uvicorn reads and drops the rest on a kept-alive connection
        # (within the drain deadline of serve.protocol), so the client reads this answer, not a reset.
        return error(503, str(busy), {"Retry-After": str(busy.retry_after)})
    except ApiError as err:
        return error(err.status, err.message, err.headers)
    except TimeoutError:
        if phase == "upload":
            return error(408, f"the upload did not finish within {limits.request_timeout:g} s", CLOSE)
        retry = gate.retry_after()
        return error(503, f"server busy: the request was not done within {limits.request_timeout:g} s; "
                          f"retry in {retry} s", {"Retry-After": str(retry)})
    except Exception as exc:  # a bug: answered here, so that the connection stays usable
        log.exception("internal error")
        return error(500, f"internal error ({type(exc).__name__}); please report it")
    timings = {"wait_ms": round(waited * 1000, 3), "total_ms": round((time.monotonic() - start) * 1000, 3)}
    return result, timings


CLOSE = {"Connection": "close"}
"""On an answer given while the client may still be sending a body nobody will read: close the
connection (serve.protocol lingers, so the client still reads the answer) instead of draining it."""


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused as soon as it is known to exceed the size limit, or to come too slowly:
    after `upload_grace` seconds it must keep arriving at `min_upload_rate` bytes per second on average
    (a client sending a byte now and then cannot hold its place until the request's time-out)."""
    limit = limits.max_upload_bytes
    too_large = f"upload too large: the limit is {limit} bytes ({limit / 2 ** 20:.1f} MiB) per request"
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"bad Content-Length header {declared!r}", CLOSE)
        if int(declared) > limit:
            raise ApiError(413, f"{too_large}; this one declares {declared} bytes", CLOSE)
    body = bytearray()
    start = time.monotonic()
    rate, grace = limits.min_upload_rate, limits.upload_grace
    receive = request.receive
    while True:
        try:
            async with asyncio.timeout_at(_loop_time(start + grace + len(body) / rate)):
                message = await receive()
        except TimeoutError:
            if time.monotonic() - start >= limits.request_timeout:
                raise
            raise ApiError(408, f"upload too slow: {len(body)} bytes in {time.monotonic() - start:.1f} s; "
                                f"after {grace:g} s a body must arrive at {rate / 1024:g} KiB/s or more", CLOSE) from None
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client disconnected during the upload")
        body += message.get("body", b"")
        if len(body) > limit:
            raise ApiError(413, too_large, CLOSE)
        if not message.get("more_body", False):
            return bytes(body)


def _loop_time(monotonic_deadline: float) -> float:
    """A time.monotonic() deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (monotonic_deadline - time.monotonic())


def _routing(router: Router) -> dict:
    if router.small == router.large:
        return {"default": router.small, "rule": f"every image goes to {router.small!r} unless a request names a model"}
    return {"default": None, "small": router.small, "large": router.large, "small_side": SMALL_SIDE,
            "rule": f"images whose sides are both at most {SMALL_SIDE} px go to {router.small!r}, others to {router.large!r}"}


def _describe(det) -> dict:
    meta = det.info.meta
    return {"name": det.name, "arch": det.info.arch, "arch_kwargs": det.info.arch_kwargs,
            "threshold": det.threshold, "uncertain_band": list(det.calibration.uncertain_band),
            "temperature": det.calibration.temperature, "logit_offset": det.calibration.offset, "input_policy": det.policy.to_json(),
            "val_metrics": meta.get("val_metrics", {}), "created_at": meta.get("created_at"),
            "card": det.info.card}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_request: Request, exc: RequestValidationError):
        return error(400, "bad request: " + "; ".join(_where(e.get("loc", ())) + str(e.get("msg")) for e in exc.errors()))

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception):
        log.exception("internal error")
        # Starlette re-raises after this answer and uvicorn then closes the connection: say so, so
        # that a client does not send its next request on a connection about to close.
        return error(500, f"internal error ({type(exc).__name__}); please report it", CLOSE)


def _where(loc) -> str:
    """('query', 'threshold') -> "query parameter 'threshold': "."""
    if len(loc) >= 2 and loc[0] in ("query", "header", "path"):
        return f"{loc[0]} parameter {loc[1]!r}: "
    return f"{' '.join(map(str, loc))}: " if loc else ""


class _SecurityHeaders:
    """Same-origin everything: the page loads nothing from elsewhere and cannot be framed."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Shed:
    """A request for work while every place is taken gets its 503 here, before routing, parameter
    validation and the rest of the framework: under overload, refusals are most of the event loop's
    work, and this makes each one cheap. (`_run` refuses the same way when the gate fills meanwhile.)"""

    def __init__(self, app, paths: tuple[str, ...]):
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"][len(scope.get("root_path", "")):] if scope.get("root_path") else scope["path"]
            gate: Gate | None = getattr(scope["app"].state, "gate", None) if "app" in scope else None
            if path in self.paths and gate is not None and gate.full:
                busy = Busy(gate.retry_after())
                body = json.dumps({"error": str(busy), "status": 503}).encode()
                # The connection is kept: uvicorn reads and drops the body (serve.protocol bounds how long).
                await send({"type": "http.response.start", "status": 503, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(busy.retry_after).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

