"""What one server accepts and how much work it takes on at once: every bound is explicit."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..data.decode import DEFAULT_MAX_PIXELS
from ..errors import UsageError


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a server alive under hostile or heavy traffic.

    Memory is bounded by `(workers + queue) * max_upload_bytes` for request bodies, plus one decoded
    image (at most `max_pixels` RGB pixels) per worker.
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    """Whole request body, multipart or JSON (base64 inflates images by a third)."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Per decoded image, the same default as the CLI (64 MP, about 192 MB of RGB); bombs are refused before decoding."""
    max_files: int = 16
    """Images per request."""
    request_timeout: float = 30.0
    """Seconds from the first byte of the request to the answer: upload, waiting and scoring."""
    workers: int = 2
    """Inference threads: requests scored at the same time."""
    queue: int = 16
    """Requests allowed to wait for a worker; one more gets 503 with Retry-After."""
    min_upload_rate: float = 8 * 1024
    """Bytes per second a body must keep arriving at, on average, once `upload_grace` has passed (408 below)."""
    upload_grace: float = 5.0
    """Seconds a body may take before `min_upload_rate` applies."""
    header_timeout: float = 10.0
    """Seconds for a request's line and headers to arrive, from the connection's start or the previous answer (408)."""
    inference_niceness: int = 5
    """How much lower the inference threads' CPU priority is than the event loop's (Linux; 0: the same).
    Under overload the loop then keeps answering (503s, health checks) while scoring takes what is
    left; on a host shared with other busy processes, scoring also yields to them."""
    drain_timeout: float = 5.0
    """After an answer sent before its body ended, the rest is read and dropped: it must keep arriving at
    `min_upload_rate`, checked over every `drain_timeout` seconds, and end within `request_timeout`, or the
    connection is closed."""

    def __post_init__(self):
        for name in ("max_upload_bytes", "max_pixels", "max_files", "workers"):
            if getattr(self, name) < 1:
                raise UsageError(f"limit {name} must be at least 1, got {getattr(self, name)}")
        if self.queue < 0:
            raise UsageError(f"limit queue must be at least 0, got {self.queue}")
        for name in ("request_timeout", "min_upload_rate", "header_timeout", "drain_timeout"):
            if getattr(self, name) <= 0:
                raise UsageError(f"limit {name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.inference_niceness <= 19:
            raise UsageError(f"limit inference_niceness must be between 0 and 19, got {self.inference_niceness}")
        if self.upload_grace < 0:
            raise UsageError(f"limit upload_grace must be at least 0, got {self.upload_grace}")

    def to_json(self) -> dict:
        return asdict(self)
