"""Load test of `realjudge serve`: N concurrent clients for T seconds against a real uvicorn server.

Starts `python -m realjudge serve` on a free loopback port, sends CIFAKE-sized images (32x32 JPEG,
one per request) to POST /v1/detect from N concurrent clients, and reports throughput, latency
percentiles and errors. The figures go into docs/RESULTS.md between the serve-load markers; the
rest of that file is left alone.

    python benchmarks/serve_load.py --clients 8 --seconds 20            # the shipped `cifake` model
    python benchmarks/serve_load.py --model runs/cifake-cnn/bundle      # any bundle
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from _common import ROOT, cifake_like_jpegs, section_block, stop_server, write_section

SECTION = "serve-load"
TARGET_P99_MS = 1000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, workers: int, queue: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "realjudge", "serve", "--host", "127.0.0.1", "--port", str(port), "--model", model,
           "--workers", str(workers), "--queue", str(queue), "--device", "cpu", "--log-level", "warning"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def wait_ready(client, url: str, server: subprocess.Popen, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"serve_load: the server exited: {server.stderr.read().strip()}")
        try:
            resp = await client.get(f"{url}/v1/models")
            if resp.status_code == 200:
                return resp.json()
        except Exception:  # not listening yet
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("serve_load: the server did not start in time")


async def hammer(client, url: str, images: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` loops, each sending one request after the other until time is up."""
    latencies: list[float] = []
    outcomes: Counter = Counter()
    stop = time.monotonic() + seconds

    async def one_client(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            data = images[i % len(images)]
            i += clients
            t0 = time.perf_counter()
            try:
                resp = await client.post(f"{url}/v1/detect", files={"file": (f"img{i}.jpg", data, "image/jpeg")})
                ok = resp.status_code == 200 and resp.json()["results"][0]["error"] is None
                outcomes["ok" if ok else f"HTTP {resp.status_code}"] += 1
            except Exception as err:  # a refused or broken connection is an error to report, not a crash
                outcomes[type(err).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    began = time.monotonic()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    elapsed = time.monotonic() - began
    lat = np.array(latencies) * 1000.0
    total = sum(outcomes.values())
    pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
    return {"requests": total, "seconds": elapsed, "throughput": outcomes["ok"] / elapsed,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": float(lat.max()) if len(lat) else float("nan"),
            "errors": total - outcomes["ok"], "error_kinds": {k: v for k, v in outcomes.items() if k != "ok"}}


async def run(args) -> tuple[dict, dict]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args.model, port, args.workers, args.queue)
    images = cifake_like_jpegs(64)
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    try:
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            models = await wait_ready(client, url, server)
            await hammer(client, url, images, args.clients, args.warmup)
            result = await hammer(client, url, images, args.clients, args.seconds)
    finally:
        stop_server(server, 20)
    return result, models


def section(args, result: dict, models: dict, load_before: float) -> str:
    m = models["models"][0]
    origin = "the shipped `cifake` detector" if args.model == "cifake" else f"bundle `{args.model}`"
    if args.note:
        origin += f" ({args.note})"
    topology = json.dumps(m["arch_kwargs"]) if m["arch_kwargs"] else "(its default topology)"
    met = result["errors"] == 0 and result["p99_ms"] < TARGET_P99_MS
    errors = "none" if not result["errors"] else ", ".join(f"{k}: {v}" for k, v in result["error_kinds"].items())
    return f"""## Serving under load

`benchmarks/serve_load.py`, {dt.date.today().isoformat()}: `realjudge serve` (uvicorn, loopback) with
{origin}: `{m['name']}`, architecture `{m['arch']}` {topology}; {args.workers} inference
threads, queue of {args.queue}. {args.clients} concurrent clients for {args.seconds:g} s (after {args.warmup:g} s of
warm-up), each sending one CIFAKE-sized image (32x32 JPEG) per request to `POST /v1/detect` and waiting
for the answer before sending the next. The clients run on the same machine.

| clients | requests | throughput (images/s) | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | errors |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| {args.clients} | {result['requests']} | {result['throughput']:.1f} | {result['p50_ms']:.1f} | {result['p90_ms']:.1f} | {result['p99_ms']:.1f} | {result['max_ms']:.1f} | {result['errors']} |

Machine: {os.cpu_count()} CPU cores ({platform.machine()}, Python {platform.python_version()}); load average
{load_before:.2f} just before the run. Errors: {errors}. Target (zero errors, p99 under
{TARGET_P99_MS / 1000:g} s with 8 clients on 2 cores): {"met" if met else "not met"}.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Bundle path or shipped name (default: the shipped cifake).")
    parser.add_argument("--note", default="", help="What the model is, for the report (e.g. how it was trained).")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2, help="Server inference threads.")
    parser.add_argument("--queue", type=int, default=16, help="Server queue (requests waiting for a worker).")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="Print the section without writing it.")
    args = parser.parse_args(argv)
    if args.model is None:
        from realjudge.bundle import shipped_names

        if "cifake" not in shipped_names():
            parser.error("the shipped cifake model is not installed; pass --model PATH to a bundle")
        args.model = "cifake"
    load_before = os.getloadavg()[0]
    result, models = asyncio.run(run(args))
    body = section(args, result, models, load_before)
    print(section_block(SECTION, body))
    if not args.no_write:
        write_section(args.results, SECTION, body, title="# Results\n")
        print(f"serve_load: wrote {args.results}", file=sys.stderr)
    if result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
