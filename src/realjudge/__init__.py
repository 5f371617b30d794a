"""realjudge: tell AI-generated images from real photographs."""

__version__ = "0.1.0"

from .detector import Detector, Record, load  # noqa: E402
from .errors import DecodeError, RealjudgeError, UsageError  # noqa: E402


def detect(inputs, model: str = "cifake", threshold: float | None = None):
    """Score images with a detector loaded once per model name (like rembg's `remove`)."""
    return _session(model).predict(inputs, threshold=threshold)


_SESSIONS: dict[str, Detector] = {}


def _session(model: str) -> Detector:
    if model not in _SESSIONS:
        _SESSIONS[model] = load(model)
    return _SESSIONS[model]


__all__ = ["Detector", "Record", "load", "detect", "DecodeError", "RealjudgeError", "UsageError", "__version__"]
