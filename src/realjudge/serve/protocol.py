"""uvicorn's HTTP/1.1 protocol (h11) with the deadlines and the close it leaves out.

Stock uvicorn has no deadline on a request head (a client that sends its headers a byte at a time
holds the connection for ever), none on the rest of a body after an early answer (a 503 or a 413
sent before the body was read: uvicorn then reads and discards the rest, however slowly it comes),
and when it closes a connection after answering (the client asked for `Connection: close`, its own
connection limit, an exception) it does so at once, with the body unread, which makes the kernel
reset the connection: the client, still sending, loses the answer and sees a bare "connection reset". Its own connection limit
answers with plain text and no Retry-After. This protocol adds:

- a head deadline: the request line and headers must arrive within `header_timeout` seconds of
  the connection opening, or of the previous answer; then 408 (or a silent close when nothing came);
- a drain deadline: after an answer sent before the body ended, uvicorn reads and drops the rest
  (the connection is kept alive); it must keep coming at `min_rate` bytes per second, checked over
  every `drain_timeout` seconds, and end within `body_cap` seconds, or the connection is closed;
- a lingering close: when a connection must close while the client is still sending (Connection:
  close, an error, a time-out), the answer is flushed and the write side shut (FIN), and what the
  client still sends is read and dropped under the same deadline, so that it reads the answer
  instead of a reset;
- the connection limit answered like every other refusal: JSON 503 with Retry-After.

Everything else is uvicorn's H11Protocol as it is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_DRAIN_TIMEOUT = 5.0


def raw_error(status: int, reason: str, message: str, extra_headers: str = "") -> bytes:
    """A complete JSON error answer that closes the connection, written without h11 (no request to answer)."""
    body = json.dumps({"error": message, "status": status}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra_headers}connection: close\r\n\r\n")
    return head.encode("ascii") + body


class _LingeringTransport:
    """The socket transport, except that `close()` while the client is still sending lingers."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedH11Protocol):
        self._transport = transport
        self._protocol = protocol
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        t = self._transport
        if t.is_closing() or not self._protocol._client_still_sending() or not t.can_write_eof():
            t.close()
            return
        try:
            t.write_eof()  # the answer is flushed first, then FIN
            t.resume_reading()
        except (OSError, RuntimeError):
            t.close()
            return
        self._protocol._linger()

    def abort(self) -> None:
        self._closing = True
        self._transport.abort()


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    min_rate: float = 8 * 1024
    body_cap: float = 30.0
    max_connections: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # uvicorn's own check answers in plain text: ours answers in JSON
        self._inner_app = self.app
        self.app = self._limited_app
        self._timer: asyncio.TimerHandle | None = None
        self._phase = ""
        self._head_bytes = 0
        self._lingering = False
        self._window_bytes = 0
        self._cap_at = 0.0

    # -- the connection limit, as JSON 503 + Retry-After
    async def _limited_app(self, scope, receive, send) -> None:
        limit = self.max_connections
        if limit is not None and (len(self.connections) > limit or len(self.tasks) > limit):
            self.logger.warning("connection limit (%d) reached: 503", limit)
            body = json.dumps({"error": f"server busy: more than {limit} open connections; retry in 1 s",
                               "status": 503}).encode()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self._inner_app(scope, receive, send)

    # -- protocol events
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._update()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._window_bytes += len(data)
        if self._lingering:
            return  # the answer is out: what the client still sends is dropped
        if self._phase == "head":
            self._head_bytes += len(data)
        super().data_received(data)
        self._update()

    def eof_received(self) -> bool | None:
        if self._lingering:
            self._cancel()
            self.transport._transport.close()  # type: ignore[attr-defined]
        return super().eof_received()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update()

    # -- deadlines
    def _client_still_sending(self) -> bool:
        return self.conn.their_state in (h11.SEND_BODY, h11.ERROR) or (
            self.conn.their_state is h11.IDLE and self._head_bytes > 0)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, seconds: float, callback) -> None:
        self._cancel()
        self._timer = self.loop.call_later(seconds, callback)

    def _update(self) -> None:
        """Which deadline applies now: waiting for a head, draining a body after the answer, or none
        (the application has the request and keeps its own time)."""
        if self._lingering or self.transport is None or self.transport.is_closing():
            return
        theirs, ours = self.conn.their_state, self.conn.our_state
        if theirs is h11.IDLE:
            phase = "head"
        elif theirs is h11.SEND_BODY and ours in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            phase = "drain"
        else:
            phase = "app"
        if phase == self._phase:
            return
        self._phase = phase
        if phase == "head":
            self._head_bytes = len(self.conn.trailing_data[0])
            self._arm(self.header_timeout, self._head_expired)
        elif phase == "drain":
            self._watch_progress()
        else:
            self._cancel()

    def _head_expired(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._head_bytes or self.conn.trailing_data[0]:
            self.logger.info("request head not received within %g s: 408", self.header_timeout)
            self.transport.write(raw_error(408, "Request Timeout",
                                           f"the request head did not arrive within {self.header_timeout:g} s"))
        self.transport.close()

    def _watch_progress(self) -> None:
        """The rest of a body nobody will read: it must keep coming at `min_rate` and end by `body_cap`."""
        self._window_bytes = 0
        self._cap_at = self.loop.time() + self.body_cap
        self._arm(self.drain_timeout, self._check_progress)

    def _check_progress(self) -> None:
        self._timer = None
        stalled = self._window_bytes < self.min_rate * self.drain_timeout
        if stalled or self.loop.time() >= self._cap_at:
            self.logger.info("the rest of a request body %s: closing",
                             "stalled" if stalled else f"did not end within {self.body_cap:g} s")
            self.transport._transport.abort()  # type: ignore[attr-defined]
            return
        self._window_bytes = 0
        self._arm(min(self.drain_timeout, max(0.0, self._cap_at - self.loop.time())), self._check_progress)

    def _linger(self) -> None:
        self._lingering = True
        self._watch_progress()


def guarded_protocol(header_timeout: float = DEFAULT_HEADER_TIMEOUT, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
                     min_rate: float = 8 * 1024, body_cap: float = 30.0,
                     max_connections: int | None = None) -> type[GuardedH11Protocol]:
    """The protocol class to hand to uvicorn (`uvicorn.run(app, http=...)`), with these deadlines."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "header_timeout": float(header_timeout), "drain_timeout": float(drain_timeout), "min_rate": float(min_rate),
        "body_cap": float(body_cap), "max_connections": max_connections})


def uvicorn_options(limits, max_connections: int | None = 256) -> dict[str, Any]:
    """The uvicorn settings every realjudge server runs with (`uvicorn.Config(app, **these, ...)`):
    this protocol with `limits`' deadlines and `max_connections`, uvicorn's own limit off (this
    protocol answers it in JSON), and the listen backlog at uvicorn's default (the kernel's
    net.core.somaxconn caps it)."""
    return {"http": guarded_protocol(limits.header_timeout, limits.drain_timeout, limits.min_upload_rate,
                                     limits.request_timeout, max_connections),
            "limit_concurrency": None, "backlog": 2048}
