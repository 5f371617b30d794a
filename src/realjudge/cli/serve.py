"""`realjudge serve`: the HTTP API and the web page (FastAPI on uvicorn)."""

from __future__ import annotations

import os

import click

from .options import runtime_option, threshold_option

from ..serve.limits import Limits

_DEFAULTS = Limits()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--model", "-m", "models", multiple=True,
              help="Shipped detector name or bundle path; repeatable (default: the shipped detectors, picked by image size).")
@threshold_option("Default decision threshold (default: each bundle's).")
@runtime_option()
@click.option("--device", default="auto", show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.max_upload_bytes / 2 ** 20,
              show_default=True, help="Largest request body, in MiB.")
@click.option("--max-pixels", type=click.IntRange(1), default=_DEFAULTS.max_pixels, show_default=True,
              help="Largest decoded image, in pixels (decompression-bomb guard).")
@click.option("--max-files", type=click.IntRange(1), default=_DEFAULTS.max_files, show_default=True, help="Images per request.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.request_timeout, show_default=True,
              help="Seconds a request may take, upload included.")
@click.option("--workers", type=click.IntRange(1, 64), default=_DEFAULTS.workers, show_default=True,
              help="Inference threads (requests scored at the same time).")
@click.option("--queue", type=click.IntRange(0), default=_DEFAULTS.queue, show_default=True,
              help="Requests that may wait for a worker; beyond them the server answers 503 with Retry-After.")
@click.option("--max-connections", type=click.IntRange(1), default=256, show_default=True,
              help="Open connections; beyond them a request gets 503 with Retry-After.")
@click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.header_timeout,
              show_default=True, help="Seconds for a request's line and headers to arrive (408 after).")
@click.option("--min-upload-kib", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.min_upload_rate / 1024,
              show_default=True, help=f"KiB/s a body must keep arriving at after {_DEFAULTS.upload_grace:g} s (408 below).")
@click.option("--inference-nice", type=click.IntRange(0, 19), default=_DEFAULTS.inference_niceness, show_default=True,
              help="How much lower the inference threads' CPU priority is than the event loop's (0: the same).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Torch threads per process (default: CPU cores / workers).")
@click.option("--proxy-headers/--no-proxy-headers", default=False, show_default=True,
              help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy).")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True, help="Proxies whose X-Forwarded-* headers are trusted.")
@click.option("--root-path", default="", help="URL prefix when a proxy serves the app under a sub-path (e.g. /realjudge).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info", show_default=True)
def command(host, port, models, threshold, runtime, device, max_upload_mb, max_pixels, max_files, timeout, workers, queue,
            max_connections, header_timeout, min_upload_kib, inference_nice, threads, proxy_headers, forwarded_allow_ips, root_path, log_level):
    """Serve the API (/v1/detect, /v1/explain, /v1/models, /healthz, docs at /docs) and the web page at /."""
    try:
        import uvicorn

        from ..serve.app import create_app
        from ..serve.protocol import uvicorn_options
        from ..serve.scoring import load_models
    except ModuleNotFoundError as err:
        raise click.UsageError(f"{err.name} is missing: pip install -e '.[serve]' in a realjudge clone") from None
    import torch

    # One torch thread per core per worker: more would make the workers' model runs fight for the cores.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads or max(1, cores // workers))
    limits = Limits(max_upload_bytes=int(max_upload_mb * 2 ** 20), max_pixels=max_pixels, max_files=max_files,
                    request_timeout=timeout, workers=workers, queue=queue,
                    header_timeout=header_timeout, min_upload_rate=min_upload_kib * 1024,
                    inference_niceness=inference_nice)
    # Loaded here, before the port opens, so that a bad model is a one-line usage error (exit 2).
    router = load_models(list(models), device, threshold, runtime)
    for det in router.detectors.values():
        if det.runtime_note:
            click.echo(f"realjudge: note: {det.name}: {det.runtime_note}", err=True)
    click.echo(f"realjudge serve: {', '.join(router.detectors)} on http://{host}:{port}{root_path}/ "
               f"(API docs at /docs)", err=True)
    uvicorn.run(create_app(router, limits), host=host, port=port, log_level=log_level, proxy_headers=proxy_headers,
                forwarded_allow_ips=forwarded_allow_ips, root_path=root_path,
                timeout_graceful_shutdown=int(timeout) + 1, **uvicorn_options(limits, max_connections))
