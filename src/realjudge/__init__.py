"""realjudge: tell AI-generated images from real photographs."""

from ._version import __version__  # noqa: E402
from .detector import Detector, Record, load  # noqa: E402
from .errors import DecodeError, RealjudgeError, UsageError  # noqa: E402


def detect(inputs, model: str | None = None, threshold: float | None = None, verdict: str = "pixels",
           provenance: bool = True, runtime: str = "torch"):
    """Score images with a detector loaded once per model name (like rembg's `remove`).

    With no `model` each image goes to the shipped detector its size picks, like `realjudge detect`
    (both sides at most 64 px: `cifake`; larger: `natural`); every record names the model that scored it.

    Each record carries the file's `provenance` findings and `provenance_verdict` beside the pixel
    verdict; `verdict="combined"` lets strong provenance override it (the record says so).

    `runtime`: "torch" (default), "onnx" (ONNX Runtime on the CPU; the `onnx` extra) or "auto" (the
    faster of the two, timed once at load); the records are the same either way."""
    return _session(model, runtime).predict(inputs, threshold=threshold, verdict=verdict, provenance=provenance)


def read_provenance(data_or_path):
    """Every provenance finding of one file (a path or its bytes), without scoring it."""
    from .data.decode import decode_bytes, read_file
    from .provenance import read

    data = data_or_path if isinstance(data_or_path, (bytes, bytearray)) else read_file(data_or_path)
    try:
        pixels = decode_bytes(bytes(data), str(data_or_path)[:200]).pixels
    except DecodeError:
        pixels = None  # metadata can still be read from a file whose pixels cannot
    return read(bytes(data), pixels)


_SESSIONS: dict[tuple[str, str], object] = {}


def _session(model, runtime: str = "torch"):
    from .onnx_bundle import check_runtime

    runtime = check_runtime(runtime)
    key = "auto" if model in (None, "", "auto") else model
    if not isinstance(key, str):
        raise UsageError(f"model must be a shipped detector name, a bundle path or 'auto', got {model!r}")
    if (key, runtime) not in _SESSIONS:
        _SESSIONS[key, runtime] = load(key, runtime=runtime)
    return _SESSIONS[key, runtime]


__all__ = ["Detector", "Record", "load", "detect", "read_provenance", "DecodeError", "RealjudgeError", "UsageError", "__version__"]
