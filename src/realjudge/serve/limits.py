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

    def __post_init__(self):
        for name in ("max_upload_bytes", "max_pixels", "max_files", "workers"):
            if getattr(self, name) < 1:
                raise UsageError(f"limit {name} must be at least 1, got {getattr(self, name)}")
        if self.queue < 0:
            raise UsageError(f"limit queue must be at least 0, got {self.queue}")
        if self.request_timeout <= 0:
            raise UsageError(f"limit request_timeout must be positive, got {self.request_timeout}")

    def to_json(self) -> dict:
        return asdict(self)
