"""The number format of the torch model step: float32, or bfloat16 where the hardware has it.

A bundle records the precision its calibration was fitted at (`bundle.json` "precision"; float32
when absent), because bfloat16 rounds a logit by up to a few tenths and the threshold and band are
fitted on the logits the model step gives. On a CPU with native bfloat16 (AVX512-BF16, AMX) a small
convolutional network runs about three times faster in it at batch sizes of a few hundred. Where the
hardware lacks it, emulation is slower than float32, so the step runs in float32 and says so: the
scores then differ from the calibration's by that rounding (`realjudge calibrate --precision
float32` fits a calibration for the float32 step instead).
"""

from __future__ import annotations

import contextlib

from .errors import UsageError

PRECISIONS = ("float32", "bfloat16")
RECORDED_DEFAULT = "float32"  # what a bundle that records no precision was calibrated at
CHOICES = ("bundle", *PRECISIONS)
SPELLINGS = {"fp32": "float32", "bf16": "bfloat16"}  # training configs written before the two vocabularies met


def canonical(name: str) -> str:
    """`name` in the PRECISIONS vocabulary (an older spelling translated; anything else unchanged)."""
    return SPELLINGS.get(name, name)


def check_precision(name: str) -> str:
    if not isinstance(name, str) or name not in CHOICES:
        raise UsageError(f"precision must be one of {', '.join(CHOICES)}, got {name!r}")
    return name


def native_bfloat16(device) -> bool:
    """Whether `device` computes bfloat16 convolutions in hardware (not emulated)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve(requested: str, recorded: str, device) -> tuple[str, str]:
    """(precision to run, note): `requested` is "bundle" or a precision; `recorded` the bundle's."""
    want = recorded if requested == "bundle" else requested  # load() has checked `requested`
    if want == "bfloat16" and not native_bfloat16(device):
        if requested == "bfloat16":
            raise UsageError(f"precision bfloat16: {device.type} here has no native bfloat16; use float32")
        return "float32", ("precision float32: the bundle is calibrated at bfloat16, which this "
                           f"{device.type} lacks; scores differ from the calibration's by rounding")
    return want, ""


def autocast(precision: str, device):
    """The context the model step runs in."""
    if precision != "bfloat16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16)
