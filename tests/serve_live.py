"""A real uvicorn server on a free loopback port, in a thread, for tests that need real sockets."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import torch


@contextlib.contextmanager
def live_server(app, start_timeout: float = 60.0, limits=None, max_connections: int | None = 256) -> Iterator[str]:
    """Serve `app` as `realjudge serve` does: with serve.protocol's deadlines from `limits` (default
    Limits()) and its connection limit."""
    import uvicorn

    from realjudge.serve.limits import Limits
    from realjudge.serve.protocol import uvicorn_options

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = uvicorn_options(limits or Limits(), max_connections)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


class Held(torch.nn.Module):
    """Wraps a network for tests that need the gate full: once armed (after the server's warm-up),
    every forward pass waits until the test releases it."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def forward(self, x):
        if self.armed:
            self.entered.set()
            self.release.wait(30)
        return self.inner(x)
