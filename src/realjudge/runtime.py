"""The machine a run lands on: the torch device, and the library versions recorded with every bundle and run.

One device rule for detection, training and generation: "auto" takes a CUDA GPU when there is one
(generation also takes Apple's MPS, where its pipelines run; the detectors are only checked on CPU
and CUDA); an explicit device that this machine lacks is a usage error, never a silent fallback.
"""

from __future__ import annotations

import platform

from .errors import UsageError

DEVICE_KINDS = ("cpu", "cuda", "mps")


def resolve_device(name: str, allow_mps: bool = False):
    """A torch.device for "auto", "cpu", "cuda", "cuda:N" (and "mps" when `allow_mps`)."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if allow_mps and mps_ok else "cpu")
    known = "auto, cpu, cuda, cuda:N" + (" or mps" if allow_mps else "")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device must be {known}, got {name!r}") from None
    if dev.type not in DEVICE_KINDS or (dev.type == "mps" and not allow_mps):
        raise UsageError(f"--device must be {known}, got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if dev.type == "mps" and not mps_ok:
        raise UsageError(f"--device {name}: MPS is not available on this machine (use --device cpu)")
    return dev


def library_versions() -> dict[str, str]:
    import numpy as np
    import PIL
    import safetensors
    import torch

    from ._version import __version__

    return {"realjudge": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "safetensors": safetensors.__version__}
