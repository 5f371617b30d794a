"""Abuse test of `realjudge serve`: hostile input, slow clients, overload and memory, on loopback.

Starts `python -m realjudge serve` on a free loopback port with 2 inference workers (the shipped
detectors unless --model is given) and measures:

  (a) schema fuzzing of every endpoint from the server's own OpenAPI document (schemathesis):
      answers that are 5xx, and answers that do not match the document (status, headers, body);
  (b) slow clients: request heads sent a byte at a time, connections that send nothing, bodies sent
      a byte at a time, bodies that never end (fast and slow), while a probe keeps asking for
      verdicts: every slow client must be timed out and the probe must keep being answered;
  (c) overload: 64 clients sending 1024-px PNGs back to back for 15 s: 200 / 503 / other answers,
      requests without an HTTP answer (refused, reset, closed), the 503 latency and the recovery
      right after the load ends;
  (d) throughput: 8 clients sending 32x32 JPEGs (CIFAKE's size): requests/s, p50, p99;
  (e) memory: the server's peak RSS while 64 clients upload bodies at the size limit at once.

The clients are raw asyncio sockets (an HTTP/1.1 client of a few dozen lines) so that they cost
the machine little next to the server and so that a reset or a close without an answer is seen
as such. A client sends its whole body, then reads the answer (as most HTTP libraries do); if the
server stops reading, it still tries to read an answer. Results go to docs/reliability/serve.json
and a summary is printed.

    python benchmarks/serve_abuse.py                      # everything, about 3 minutes
    python benchmarks/serve_abuse.py --only c,d --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from _common import ROOT, cifake_like_jpegs, stop_server

HOST = "127.0.0.1"
TARGET_503_P99_MS = 100.0
TARGET_SMALL_P99_MS = 250.0


# --------------------------------------------------------------------------- a minimal HTTP/1.1 client
@dataclass
class Answer:
    status: int | None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0
    error: str | None = None  # refused / reset / closed / timeout: no HTTP answer at all


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "rj" + uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if body or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    line = await reader.readline()
    if not line:
        raise EOFError("closed before an answer")
    status = int(line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while (size := int((await reader.readline()).split(b";")[0], 16)):
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    else:
        body = await reader.read()
    return status, headers, body


def classify(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(err, (EOFError, asyncio.IncompleteReadError)):
        return "closed"
    if isinstance(err, TimeoutError):
        return "timeout"
    return type(err).__name__


class Client:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int, timeout: float = 60.0):
        self.port, self.timeout = port, timeout
        self.reader = self.writer = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> Answer:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=2 ** 20)
                try:
                    self.writer.write(raw)
                    await self.writer.drain()
                except (ConnectionResetError, BrokenPipeError):
                    pass  # the server stopped reading: its answer may still be there to read
                status, headers, body = await read_answer(self.reader)
        except Exception as err:  # no HTTP answer: this is what is counted, not raised
            await self.close()
            return Answer(None, seconds=time.perf_counter() - t0, error=classify(err))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Answer(status, headers, body, time.perf_counter() - t0)


def pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if len(values) else None


# --------------------------------------------------------------------------- images
def png_1024(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:1024, 0:1024] / 1024
    base = np.stack([np.sin(x * 5), np.cos(y * 3), np.sin((x + y) * 2)], -1)
    img = np.clip(127 + 100 * base + rng.normal(0, 6, (1024, 1024, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def png_at_most(nbytes: int, seed: int = 1) -> bytes:
    """A noise PNG (it does not compress) whose file is just under `nbytes`."""
    side = int((nbytes / 3) ** 0.5)
    rng = np.random.default_rng(seed)
    while True:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
        if buf.tell() <= nbytes:
            return buf.getvalue()
        side -= max(1, side // 200)


# --------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(args, port: int, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "realjudge", "serve", "--host", HOST, "--port", str(port), "--workers", "2",
           "--device", "cpu", "--log-level", "warning"]
    for m in args.model:
        cmd += ["--model", m]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)


async def wait_ready(port: int, server: subprocess.Popen, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"serve_abuse: the server exited with code {server.returncode}")
        ans = await Client(port, 5).request(request_bytes("GET", "/v1/models", headers={"Connection": "close"}))
        if ans.status == 200:
            return json.loads(ans.body)
        await asyncio.sleep(0.2)
    raise SystemExit("serve_abuse: the server did not start in time")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def vm_hwm(pid: int) -> int | None:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def reset_hwm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- (a) schema fuzzing
def fuzz(url: str, examples: int) -> dict:
    """Every operation of /openapi.json, positive and negative data; counts of 5xx and of answers
    that do not match the document."""
    import hypothesis
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance]
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    import requests

    models = [m["name"] for m in requests.get(f"{url}/v1/models", timeout=30).json()["models"]]
    out = {"examples_per_operation_and_mode": examples, "operations": {}, "calls": 0, "server_errors": 0,
           "schema_mismatches": 0, "failures": []}
    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        stats = {"calls": 0, "statuses": Counter()}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                                 suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def call(case):
                response = case.call(base_url=url, timeout=60)
                stats["calls"] += 1
                stats["statuses"][str(response.status_code)] += 1
                if response.status_code >= 500:
                    out["server_errors"] += 1
                try:
                    case.validate_response(response, checks=checks)
                except (Exception, BaseExceptionGroup) as err:  # a FailureGroup of the checks that failed
                    if response.status_code < 500:
                        out["schema_mismatches"] += 1
                    if len(out["failures"]) < 20:
                        out["failures"].append({"operation": label, "mode": mode.value,
                                                "status": response.status_code,
                                                "what": " ".join(str(err).split())[:400]})
            try:
                call()
            except hypothesis.errors.Unsatisfiable:
                pass
        # Generated bodies are never images, so answers with verdicts come from real ones, checked alike.
        for query, body, media in _real_cases(op.path, models):
            if "{name}" in op.path:
                case = schema.make_case(operation=op, path_parameters={"name": query.pop("name")}, query=query)
            else:
                case = schema.make_case(operation=op, query=query, body=body, media_type=media)
            response = case.call(base_url=url, timeout=120)
            stats["real_input_calls"] = stats.get("real_input_calls", 0) + 1
            stats["calls"] += 1
            stats["statuses"][str(response.status_code)] += 1
            if response.status_code >= 500:
                out["server_errors"] += 1
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as err:
                if response.status_code < 500:
                    out["schema_mismatches"] += 1
                out["failures"].append({"operation": label, "mode": "real image", "status": response.status_code,
                                        "what": " ".join(str(err).split())[:400]})
        out["operations"][label] = {"calls": stats["calls"], "real_input_calls": stats.get("real_input_calls", 0),
                                    "statuses": dict(stats["statuses"])}
        out["calls"] += stats["calls"]
    return out


def _real_cases(path: str, models: list[str]) -> list[tuple[dict, object, str | None]]:
    """(query, body, media type) with real images for the endpoints that take them, and real model
    names for those that name one (a name in the path goes in `query["name"]`)."""
    if "{name}" in path:
        return [({"name": m}, None, None) for m in models]
    import base64

    small = cifake_like_jpegs(2)
    rng = np.random.default_rng(5)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    photo = buf.getvalue()
    b64 = base64.b64encode(small[0]).decode()
    if path == "/v1/detect":
        return [({}, {"file": [small[0]]}, "multipart/form-data"),
                ({"verdict": "combined", "threshold": 0.3}, {"file": [small[0], photo, b"not an image"]}, "multipart/form-data"),
                ({}, {"file": [b"not an image"]}, "multipart/form-data"),
                ({}, {"images": [{"name": "a.jpg", "data": b64}], "model": "cifake", "threshold": 0.7}, "application/json")]
    if path == "/v1/explain":
        return [({}, {"file": [small[0]]}, "multipart/form-data"),
                ({"format": "json"}, {"file": [small[1]]}, "multipart/form-data"),
                ({"format": "json"}, {"file": [photo]}, "multipart/form-data"),
                ({"format": "json", "method": "occlusion"}, {"file": [small[0]]}, "multipart/form-data"),
                ({"format": "json"}, {"images": [{"data": b64}]}, "application/json"),
                ({}, {"file": [b"not an image"]}, "multipart/form-data")]
    return []


# --------------------------------------------------------------------------- (b) slow clients
async def slow_client(port: int, head: bytes, trickle: bytes, every: float, give_up: float,
                      chunk_forever: bytes | None = None) -> dict:
    """Send `head`, then `trickle` a byte every `every` s (or `chunk_forever` over and over), reading
    at the same time; the outcome is the server's status (or how the connection ended) and when."""
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as err:
        return {"outcome": classify(err), "seconds": 0.0}
    answer: dict = {}

    async def read() -> None:
        try:
            status, _h, _b = await read_answer(reader)
            answer.update(outcome=str(status), seconds=time.monotonic() - t0)
        except Exception as err:
            answer.update(outcome=classify(err), seconds=time.monotonic() - t0)

    async def write() -> None:
        try:
            writer.write(head)
            await writer.drain()
            i = 0
            while not answer:
                if chunk_forever is not None:
                    writer.write(chunk_forever)
                    await writer.drain()
                    await asyncio.sleep(every)
                    continue
                if trickle:
                    writer.write(trickle[i % len(trickle):i % len(trickle) + 1])
                    await writer.drain()
                    i += 1
                await asyncio.sleep(every)
        except OSError:
            pass

    reading = asyncio.ensure_future(read())
    writing = asyncio.ensure_future(write())
    try:
        await asyncio.wait_for(asyncio.shield(reading), give_up)
    except TimeoutError:
        answer.update(outcome="still open", seconds=time.monotonic() - t0)
    writing.cancel()
    reading.cancel()
    writer.close()
    return dict(answer)


async def probe(port: int, raw: bytes, stop: asyncio.Event) -> dict:
    """A well-behaved client asking for a verdict every 0.2 s while the slow ones hold on."""
    client, answers = Client(port, 30), []
    while not stop.is_set():
        answers.append(await client.request(raw))
        await asyncio.sleep(0.2)
    await client.close()
    ok = [a.seconds for a in answers if a.status == 200]
    return {"requests": len(answers), "statuses": dict(Counter(str(a.status or a.error) for a in answers)),
            "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99), "max_ms": pct(ok, 100)}


async def slow_clients(port: int, small: bytes, n_heads: int, limits: dict) -> dict:
    head_to = limits["header_timeout"]
    body_give_up = limits["request_timeout"] + limits["drain_timeout"] + 10
    post = b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    mp_body, ctype = multipart("slow.jpg", small)
    kinds = {
        "head a byte at a time": dict(n=n_heads, head=b"POST /v1/detect HTTP/1.1\r\n", trickle=b"X-Slow: yes\r\n",
                                      every=0.5, give_up=head_to + 10),
        "connect and send nothing": dict(n=20, head=b"", trickle=b"", every=0.5, give_up=head_to + 10),
        "body a byte at a time": dict(n=8, head=post + f"Content-Type: {ctype}\r\nContent-Length: {len(mp_body)}\r\n\r\n"
                                      .encode(), trickle=mp_body, every=0.5, give_up=body_give_up),
        "chunked body without end, fast": dict(n=2, head=post + f"Content-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
                                               .encode(), trickle=b"", every=0.0, give_up=body_give_up,
                                               chunk_forever=b"10000\r\n" + b"\0" * 0x10000 + b"\r\n"),
        "chunked body without end, 10 KiB/s": dict(n=4, head=post + f"Content-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                   .encode(), trickle=b"", every=0.1, give_up=body_give_up,
                                                   chunk_forever=b"400\r\n" + b"\0" * 0x400 + b"\r\n"),
    }
    stop = asyncio.Event()
    probing = asyncio.ensure_future(probe(port, request_bytes("POST", "/v1/detect", mp_body, {"Content-Type": ctype}), stop))
    tasks = {k: [asyncio.ensure_future(slow_client(port, v["head"], v["trickle"], v["every"], v["give_up"],
                                                   v.get("chunk_forever"))) for _ in range(v["n"])]
             for k, v in kinds.items()}
    out = {}
    for kind, ts in tasks.items():
        results = await asyncio.gather(*ts)
        secs = [r["seconds"] for r in results]
        out[kind] = {"connections": len(results), "outcomes": dict(Counter(r["outcome"] for r in results)),
                     "seconds_p50": round(float(np.median(secs)), 2), "seconds_max": round(max(secs), 2)}
    stop.set()
    out["probe (32x32 JPEG every 0.2 s meanwhile)"] = await probing
    out["still open at the end"] = sum(v["outcomes"].get("still open", 0) for v in out.values() if "outcomes" in v)
    return out


# --------------------------------------------------------------------------- (c), (d) load
async def closed_loop(port: int, raws: list[bytes], clients: int, seconds: float) -> list[Answer]:
    stop = time.monotonic() + seconds
    answers: list[Answer] = []

    async def one(k: int) -> None:
        client, i = Client(port), k
        while time.monotonic() < stop:
            answers.append(await client.request(raws[i % len(raws)]))
            i += clients
        await client.close()

    await asyncio.gather(*(one(k) for k in range(clients)))
    return answers


def summarise(answers: list[Answer], seconds: float) -> dict:
    statuses = Counter(str(a.status) for a in answers if a.status is not None)
    errors = Counter(a.error for a in answers if a.error)
    ok = [a.seconds for a in answers if a.status == 200]
    busy = [a.seconds for a in answers if a.status == 503]
    busy_with_retry = sum(1 for a in answers if a.status == 503 and "retry-after" in a.headers)
    return {"requests": len(answers), "seconds": round(seconds, 2), "statuses": dict(statuses),
            "no_http_answer": sum(errors.values()), "no_http_answer_kinds": dict(errors),
            "ok_per_s": round(len(ok) / seconds, 1), "answers_per_s": round(len(answers) / seconds, 1),
            "ok_p50_ms": pct(ok, 50), "ok_p99_ms": pct(ok, 99),
            "busy_503": len(busy), "busy_503_with_retry_after": busy_with_retry,
            "busy_p50_ms": pct(busy, 50), "busy_p99_ms": pct(busy, 99), "busy_max_ms": pct(busy, 100)}


async def reaction(port: int, raw: bytes, stop: asyncio.Event) -> list[tuple[int | str, float]]:
    """Like a browser or curl: send the request while reading, and time the status line, which the
    server may send before it has read the body. One connection per request, every 50 ms."""
    out = []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError as err:
            out.append((classify(err), 0.0))
            continue
        reading = asyncio.ensure_future(reader.readline())
        try:
            for i in range(0, len(raw), 65536):
                if reading.done():
                    break
                writer.write(raw[i:i + 65536])
                await writer.drain()
            line = await asyncio.wait_for(reading, 60)
            out.append((int(line.split()[1]) if line else "closed", time.perf_counter() - t0))
        except Exception as err:
            out.append((classify(err), time.perf_counter() - t0))
        reading.cancel()
        writer.close()
        await asyncio.sleep(0.05)
    return out


async def overload(port: int, clients: int, seconds: float) -> dict:
    big = [request_bytes("POST", "/v1/detect", *_body_and_type(png_1024(s))) for s in range(4)]
    stop = asyncio.Event()
    probing = asyncio.ensure_future(reaction(port, big[1], stop))
    t0 = time.monotonic()
    answers = await closed_loop(port, big, clients, seconds)
    stop.set()
    out = summarise(answers, time.monotonic() - t0)
    reactions = await probing
    busy = [t for status, t in reactions if status == 503]
    out["reaction_probe"] = {"what": "status line timed while the body is still being sent (one more client)",
                             "requests": len(reactions), "statuses": dict(Counter(str(st) for st, _ in reactions)),
                             "busy_p50_ms": pct(busy, 50), "busy_p99_ms": pct(busy, 99)}
    # Recovery: one request right after the last answer of the load, then until one is scored.
    t1 = time.perf_counter()
    first = await Client(port, 60).request(big[0])
    out["first_request_after"] = {"status": first.status or first.error, "ms": round(first.seconds * 1000, 1)}
    while True:
        ans = first if first.status == 200 else await Client(port, 60).request(big[0])
        if ans.status == 200 or time.perf_counter() - t1 > 60:
            break
        await asyncio.sleep(0.05)
    out["recovery_ms"] = round((time.perf_counter() - t1) * 1000, 1)
    return out


def _body_and_type(data: bytes, name: str = "img.png") -> tuple[bytes, dict]:
    body, ctype = multipart(name, data)
    return body, {"Content-Type": ctype}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(port: int, pid: int, clients: int, seconds: float, warmup: float) -> dict:
    """Closed loop of `clients`; besides latency, the CPU time each request costs the server and the
    client, which says what the machine would do with its cores to itself (the wall-clock figures
    depend on whatever else runs)."""
    small = [request_bytes("POST", "/v1/detect", *_body_and_type(j, "img.jpg")) for j in cifake_like_jpegs(64)]
    await closed_loop(port, small, clients, warmup)
    server0, client0, t0 = cpu_seconds(pid), time.process_time(), time.monotonic()
    answers = await closed_loop(port, small, clients, seconds)
    server_cpu, client_cpu = cpu_seconds(pid) - server0, time.process_time() - client0
    s = summarise(answers, time.monotonic() - t0)
    n = max(1, len(answers))
    per_request_ms = (server_cpu + client_cpu) / n * 1000
    return {"clients": clients, "requests": s["requests"], "seconds": s["seconds"], "statuses": s["statuses"],
            "no_http_answer": s["no_http_answer"], "requests_per_s": s["ok_per_s"], "p50_ms": s["ok_p50_ms"],
            "p90_ms": pct([a.seconds for a in answers if a.status == 200], 90), "p99_ms": s["ok_p99_ms"],
            "server_cpu_ms_per_request": round(server_cpu / n * 1000, 2),
            "client_cpu_ms_per_request": round(client_cpu / n * 1000, 2),
            "server_cores_used": round(server_cpu / s["seconds"], 2),
            "requests_per_s_if_the_cores_were_ours": round(os.cpu_count() * 1000 / per_request_ms, 1)}


# --------------------------------------------------------------------------- (e) memory
async def memory(port: int, pid: int, clients: int, limits: dict) -> dict:
    limit = limits["max_upload_bytes"]
    overhead = len(multipart("big.png", b"")[0]) + 64
    data = png_at_most(limit - overhead)
    raw = request_bytes("POST", "/v1/detect", *_body_and_type(data, "big.png"))
    body_len = len(raw) - raw.index(b"\r\n\r\n") - 4
    idle = rss_bytes(pid)
    hwm_reset = reset_hwm(pid)
    peak, done = idle, False

    async def sample() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.01)

    sampler = asyncio.ensure_future(sample())
    t0 = time.monotonic()
    answers = await asyncio.gather(*(Client(port, 120).request(raw) for _ in range(clients)))
    done = True
    await sampler
    hwm = vm_hwm(pid) if hwm_reset else None
    peak = max(peak, hwm or 0)
    statuses = Counter(str(a.status or a.error) for a in answers)
    capacity = limits["workers"] + limits["queue"]
    per_admitted = (peak - idle) / max(1, min(clients, capacity))
    mib = 2 ** 20
    return {"clients": clients, "body_bytes": body_len, "limit_bytes": limit, "image": f"PNG of noise, {len(data)} bytes",
            "seconds": round(time.monotonic() - t0, 1), "statuses": dict(statuses),
            "rss_idle_mib": round(idle / mib, 1), "rss_peak_mib": round(peak / mib, 1),
            "peak_from": "VmHWM after clear_refs" if hwm else "RSS sampled every 10 ms",
            "admitted_at_once": capacity,
            "mib_per_admitted_request": round(per_admitted / mib, 1),
            "implied_bound_mib": round((idle + capacity * per_admitted) / mib, 1),
            "bound_rule": f"idle + (workers + queue = {capacity}) x {per_admitted / mib:.0f} MiB "
                          f"(about {per_admitted / limit:.1f} x the {limit / mib:.0f} MiB upload limit), "
                          "whatever the number of clients: the others get 503 before their body is read"}


# --------------------------------------------------------------------------- run it all
async def run(args, port: int, server: subprocess.Popen) -> dict:
    models = await wait_ready(port, server)
    limits = models["limits"]
    small = cifake_like_jpegs(1)[0]
    out: dict = {"limits": limits, "models": [m["name"] for m in models["models"]]}
    url = f"http://{HOST}:{port}"
    if "d" in args.only:
        print("serve_abuse: (d) 8 clients, 32x32 JPEGs ...", file=sys.stderr)
        out["d_throughput_32px"] = await throughput(port, server.pid, 8, args.seconds, 2.0)
    if "c" in args.only:
        print("serve_abuse: (c) 64 clients, 1024-px PNGs ...", file=sys.stderr)
        out["c_overload_1024px"] = await overload(port, 64, args.seconds)
    if "b" in args.only:
        print("serve_abuse: (b) slow clients ...", file=sys.stderr)
        out["b_slow_clients"] = await slow_clients(port, small, args.slow_heads, limits)
    if "a" in args.only:
        print("serve_abuse: (a) schema fuzzing ...", file=sys.stderr)
        out["a_fuzzing"] = await asyncio.to_thread(fuzz, url, args.examples)
    ans = await Client(port, 10).request(request_bytes("GET", "/healthz", headers={"Connection": "close"}))
    out["healthz_at_the_end"] = json.loads(ans.body) if ans.status == 200 else ans.status or ans.error
    return out


async def run_memory(args, port: int, server: subprocess.Popen) -> dict:
    """(e) on a server of its own, so that its idle RSS is that of a fresh process."""
    limits = (await wait_ready(port, server))["limits"]
    print("serve_abuse: (e) 64 uploads at the size limit, fresh server ...", file=sys.stderr)
    return await memory(port, server.pid, 64, limits)


def summary(r: dict) -> str:
    lines = []
    if "a_fuzzing" in r:
        a = r["a_fuzzing"]
        lines.append(f"(a) fuzzing: {a['calls']} calls over {len(a['operations'])} operations; 5xx: {a['server_errors']}; "
                     f"not matching the schema: {a['schema_mismatches']}")
    if "b_slow_clients" in r:
        b = r["b_slow_clients"]
        for k, v in b.items():
            if isinstance(v, dict) and "outcomes" in v:
                lines.append(f"(b) {k}: {v['connections']} -> {v['outcomes']} after {v['seconds_p50']} s (max {v['seconds_max']} s)")
        p = b["probe (32x32 JPEG every 0.2 s meanwhile)"]
        lines.append(f"(b) probe meanwhile: {p['requests']} requests -> {p['statuses']}, p50 {p['p50_ms']} ms, max {p['max_ms']} ms; "
                     f"still open at the end: {b['still open at the end']}")
    if "c_overload_1024px" in r:
        c = r["c_overload_1024px"]
        lines.append(f"(c) 64 clients x 1024-px PNG, {c['seconds']} s: {c['statuses']}, no HTTP answer: {c['no_http_answer']} "
                     f"{c['no_http_answer_kinds'] or ''}; 503 p50 {c['busy_p50_ms']} ms, p99 {c['busy_p99_ms']} ms "
                     f"({c['busy_503_with_retry_after']}/{c['busy_503']} with Retry-After); 200 p50 {c['ok_p50_ms']} ms; "
                     f"first request after: {c['first_request_after']}, recovered in {c['recovery_ms']} ms")
        rp = c["reaction_probe"]
        lines.append(f"(c) meanwhile, a client reading while it sends: {rp['statuses']}, 503 status line after "
                     f"p50 {rp['busy_p50_ms']} ms, p99 {rp['busy_p99_ms']} ms")
    if "d_throughput_32px" in r:
        d = r["d_throughput_32px"]
        lines.append(f"(d) 8 clients x 32x32 JPEG: {d['requests_per_s']} requests/s, p50 {d['p50_ms']} ms, p90 {d['p90_ms']} ms, "
                     f"p99 {d['p99_ms']} ms, {d['statuses']}, no HTTP answer: {d['no_http_answer']}; CPU per request: "
                     f"server {d['server_cpu_ms_per_request']} ms, client {d['client_cpu_ms_per_request']} ms "
                     f"(server used {d['server_cores_used']} cores; all cores to ourselves: {d['requests_per_s_if_the_cores_were_ours']} requests/s)")
    if "e_memory" in r:
        e = r["e_memory"]
        lines.append(f"(e) 64 uploads of {e['body_bytes']} bytes: {e['statuses']}; RSS idle {e['rss_idle_mib']} MiB, "
                     f"peak {e['rss_peak_mib']} MiB; bound: {e['bound_rule']} = {e['implied_bound_mib']} MiB")
    lines.append(f"servers: {r['server']['tracebacks']} tracebacks in their logs, exit codes {r['server']['exit_codes']} "
                 "(-15: stopped by this script)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], help="Bundle or shipped name (default: the shipped detectors).")
    parser.add_argument("--only", default="a,b,c,d,e", help="Which parts, comma-separated (default: all).")
    parser.add_argument("--seconds", type=float, default=15.0, help="Length of (c) and (d).")
    parser.add_argument("--examples", type=int, default=40, help="(a): examples per operation and mode.")
    parser.add_argument("--slow-heads", type=int, default=200, help="(b): connections sending their head a byte at a time.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability" / "serve.json")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    args.only = set(args.only.replace(",", ""))
    load_before = os.getloadavg()[0]
    result, text, codes = {}, "", []
    for step, runner in (("abcd", run), ("e", run_memory)):
        if not set(step) & args.only:
            continue
        port = free_port()
        with tempfile.TemporaryFile("w+") as log:
            server = start_server(args, port, log)
            try:
                result.update(asyncio.run(runner(args, port, server)) if step == "abcd"
                              else {"e_memory": asyncio.run(runner(args, port, server))})
            finally:
                codes.append(stop_server(server, 30))
            log.seek(0)
            text += log.read()
    result = {"date": dt.date.today().isoformat(), "command": "python benchmarks/serve_abuse.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"cores": os.cpu_count(), "arch": platform.machine(), "python": platform.python_version(),
                          "load_average_before": round(load_before, 2),
                          "somaxconn": Path("/proc/sys/net/core/somaxconn").read_text().strip()
                          if Path("/proc/sys/net/core/somaxconn").exists() else None},
              **result,
              "server": {"tracebacks": text.count("Traceback"), "exit_codes": codes,
                         "log_tail": text.strip().splitlines()[-5:]}}
    print(summary(result))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"serve_abuse: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
