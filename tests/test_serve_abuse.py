"""The service under abuse, over real sockets: a full gate, early answers to bodies not yet read,
bodies that never end or come a byte at a time, request heads that never finish, bursts.

Each test runs a real uvicorn server (serve.protocol, as `realjudge serve` does) with short
deadlines, and speaks raw HTTP/1.1 so that a reset or a close without an answer is seen as such.
A model that waits on the test (`Held`) keeps the gate full for as long as a test needs.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")

from conftest import make_images  # noqa: E402
from serve_live import Held, live_server  # noqa: E402

from realjudge.detector import Detector  # noqa: E402
from realjudge.router import Router  # noqa: E402
from realjudge.serve.app import create_app  # noqa: E402
from realjudge.serve.limits import Limits  # noqa: E402
from realjudge.serve.scoring import SharedLock, load_models  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def router() -> Router:
    """The shipped 32x32 detector: loaded in a moment, nothing to train."""
    return load_models(["cifake"], device="cpu")


@pytest.fixture
def held(router):
    det = router.detectors["cifake"]
    gate = Held(det.model)
    yield gate, Router({"cifake": Detector(gate, det.info, det.device)}, "cifake", "cifake")
    gate.release.set()


@pytest.fixture(scope="module")
def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_images(1, seed=3)[0][0]).save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- raw HTTP
def multipart(data: bytes, name: str = "a.png") -> tuple[bytes, str]:
    b = "testboundary7f3a"
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def detect_request(data: bytes, *extra: str) -> bytes:
    body, ctype = multipart(data)
    head = ["POST /v1/detect HTTP/1.1", "Host: test", f"Content-Type: {ctype}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    """One HTTP answer; raises EOFError when the connection closes before a whole one."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"closed before an answer: {buf[:200]!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed in the middle of an answer")
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:length]


def exchange(port: int, raw: bytes, sock: socket.socket | None = None, timeout: float = 20.0):
    """Send a whole request, then read the answer, as most HTTP clients do."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(raw)
        return read_answer(s)
    finally:
        if sock is None:
            s.close()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def fill_gate(port: int, gate: Held, png: bytes, n: int) -> list:
    """Occupy `n` places (the first one inside the model): sockets whose answers come on release."""
    gate.armed = True
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(detect_request(png))
        socks.append(s)
        if i == 0:
            assert gate.entered.wait(10)
    time.sleep(0.2)  # the others reach the queue
    return socks


# --------------------------------------------------------------------------- a full gate
def test_full_gate_answers_503_at_once_without_reading_the_body(held, png):
    gate, slow = held
    with live_server(create_app(slow, Limits(workers=1, queue=1))) as url:
        port = port_of(url)
        waiting = fill_gate(port, gate, png, 2)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            # the body is drained: the same connection answers the next request
            t0 = time.monotonic()
            status, headers, body = exchange(port, detect_request(png), s)
            assert status == 503 and int(headers["retry-after"]) >= 1, body
            assert json.loads(body)["status"] == 503 and "busy" in json.loads(body)["error"]
            assert time.monotonic() - t0 < 5
            assert exchange(port, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n", s)[0] == 200
            # a large one too (uvicorn reads and drops the rest of the body)
            big = np.random.default_rng(0).integers(0, 256, 3 * 2 ** 20, dtype=np.uint8).tobytes()
            t0 = time.monotonic()
            status, headers, _ = exchange(port, detect_request(big), s)
            assert status == 503 and int(headers["retry-after"]) >= 1
            assert time.monotonic() - t0 < 5
            assert exchange(port, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n", s)[0] == 200
        gate.release.set()
        assert [read_answer(w)[0] for w in waiting] == [200, 200]
        for w in waiting:
            w.close()


def test_503_to_a_client_that_asks_to_close_is_not_a_reset(held, png):
    """Connection: close made uvicorn close at once on the unread body: the kernel reset the
    connection and the client, still sending, lost the answer. The close now lingers."""
    gate, slow = held
    with live_server(create_app(slow, Limits(workers=1, queue=0))) as url:
        port = port_of(url)
        waiting = fill_gate(port, gate, png, 1)
        big = b"\x00" * (8 * 2 ** 20)  # well beyond what the socket buffers hold
        for _ in range(3):
            status, headers, _ = exchange(port, detect_request(big, "Connection: close"))
            assert status == 503 and "retry-after" in headers and headers["connection"] == "close"
        gate.release.set()
        assert read_answer(waiting[0])[0] == 200
        waiting[0].close()


def test_burst_gets_an_http_answer_for_every_request(held, png):
    gate, slow = held
    with live_server(create_app(slow, Limits(workers=1, queue=1))) as url:
        port = port_of(url)
        waiting = fill_gate(port, gate, png, 2)
        body = png + b"\x00" * 2 ** 20

        def one(i: int) -> str:
            extra = ("Connection: close",) if i % 3 == 0 else ()
            try:
                return str(exchange(port, detect_request(body, *extra))[0])
            except OSError as err:
                return type(err).__name__
            except EOFError:
                return "closed"

        with ThreadPoolExecutor(24) as pool:
            outcomes = Counter(pool.map(one, range(48)))
        assert outcomes == {"503": 48}, outcomes
        gate.release.set()
        assert [read_answer(w)[0] for w in waiting] == [200, 200]
        for w in waiting:
            w.close()
        assert exchange(port, detect_request(png))[0] == 200  # recovered at once


# --------------------------------------------------------------------------- slow and endless clients
def test_request_head_sent_a_byte_at_a_time_is_timed_out(router):
    with live_server(create_app(router), limits=Limits(header_timeout=0.5)) as url:
        port = port_of(url)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/detect HTTP/1.1\r\n")
            t0 = time.monotonic()
            reply = b""
            s.settimeout(0.1)
            for ch in b"X-Slow: " + b"a" * 100:
                try:
                    s.send(bytes([ch]))
                    reply += s.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if b"\r\n\r\n" in reply:
                    break
            assert reply.startswith(b"HTTP/1.1 408"), reply
            assert 0.4 < time.monotonic() - t0 < 3
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:  # sends nothing at all
            t0 = time.monotonic()
            assert closed_by_server(idle, 5) and time.monotonic() - t0 < 3
        assert exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200


def test_body_a_byte_at_a_time_is_cut_by_the_minimum_rate(router):
    limits = Limits(upload_grace=0.3, min_upload_rate=2000)
    with live_server(create_app(router, limits), limits=limits) as url:
        with socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) as s:
            s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
            t0 = time.monotonic()
            s.settimeout(0.05)
            reply = b""
            for _ in range(200):
                try:
                    s.send(b" ")
                    reply += s.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if b"}" in reply:
                    break
            assert reply.startswith(b"HTTP/1.1 408") and b"too slow" in reply, reply
            assert b"connection: close" in reply.lower()
            assert time.monotonic() - t0 < 3


def test_body_that_never_ends(router):
    """Chunked bodies without an end: a fast one is refused at the size limit, a slow one at the
    request's time-out, and the connection is closed after a bounded linger."""
    limits = Limits(max_upload_bytes=200_000, request_timeout=1.0, drain_timeout=0.5, min_upload_rate=1000)
    with live_server(create_app(router, limits), limits=limits) as url:
        for pause, status in ((0.0, 413), (0.01, 408)):
            with socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) as s:
                s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                t0 = time.monotonic()
                s.settimeout(pause or 0.001)
                reply = b""
                while b"}" not in reply and time.monotonic() - t0 < 10:
                    try:
                        s.send(b"400\r\n" + b" " * 0x400 + b"\r\n")
                        reply += s.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                assert reply.startswith(f"HTTP/1.1 {status}".encode()), reply[:300]
                assert time.monotonic() - t0 < 5
                assert closed_by_server(s, 5)


def test_rest_of_a_body_after_an_early_answer_has_a_deadline(held, png):
    gate, slow = held
    limits = Limits(workers=1, queue=0, drain_timeout=0.5)
    with live_server(create_app(slow, limits), limits=limits) as url:
        port = port_of(url)
        waiting = fill_gate(port, gate, png, 1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000000\r\n\r\n{\"images\":")
            status, headers, _ = read_answer(s)
            assert status == 503 and "retry-after" in headers
            t0 = time.monotonic()
            assert closed_by_server(s, 5)  # the rest of the body never came
            assert time.monotonic() - t0 < 3
        gate.release.set()
        assert read_answer(waiting[0])[0] == 200
        waiting[0].close()


def test_connection_limit_is_a_json_503_with_retry_after(router):
    with live_server(create_app(router), max_connections=3) as url:
        port = port_of(url)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        time.sleep(0.2)
        status, headers, body = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status == 503 and headers["retry-after"] == "1" and json.loads(body)["status"] == 503
        for s in idle:
            s.close()
        time.sleep(0.2)
        assert exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200


# --------------------------------------------------------------------------- the model lock
def test_scoring_jobs_share_a_network_and_an_explanation_holds_it_alone():
    lock, both_in = SharedLock(), threading.Barrier(2, timeout=5)

    def scorer() -> None:
        with lock.shared():
            both_in.wait()  # both scorers are inside at once, or this times out

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(scorer) for _ in range(2)]:
            f.result(10)

    order, scorer_in, release = [], threading.Event(), threading.Event()

    def long_scorer() -> None:
        with lock.shared():
            scorer_in.set()
            release.wait(5)
            order.append("scorer out")

    def explainer() -> None:
        with lock.exclusive():
            order.append("explain in")
            time.sleep(0.05)
            order.append("explain out")

    def late_scorer() -> None:
        with lock.shared():
            order.append("late scorer in")

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(long_scorer)
        assert scorer_in.wait(5)
        second = pool.submit(explainer)
        time.sleep(0.1)
        third = pool.submit(late_scorer)
        time.sleep(0.1)
        assert order == []  # the explainer waits for the scorer; the late scorer waits behind the explainer
        release.set()
        for f in (first, second, third):
            f.result(10)
    assert order == ["scorer out", "explain in", "explain out", "late scorer in"]
