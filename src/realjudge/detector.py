"""Detector: one trained bundle, loaded once, scoring anything `decode` reads.

Scoring goes through realjudge.pipeline (decode -> route -> views -> model -> calibrate -> record);
the Detector holds the model step (`logits`), the bundle's policy and its calibration.

The model step runs on one of two runtimes, chosen at load (`runtime=`): `torch` (the default) or
`onnx`, the bundle's ONNX graph in ONNX Runtime on the CPU (realjudge.onnx_bundle; the `onnx` extra).
`auto` times both on a warm-up batch and keeps the faster. Either way the pipeline, and so the
records, are the same; the torch model stays loaded for explanations (they need its gradients).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import numpy as np

from .bundle import BundleInfo, load_bundle, shipped_names
from .calibrate import check_threshold
from .data.decode import DEFAULT_MAX_PIXELS
from .errors import UsageError
from .records import RECORD_FIELDS, Record  # noqa: F401  (RECORD_FIELDS: the CLI's columns)
from .router import NATURAL_MODEL, SMALL_MODEL, Router


# On the CPU a forward pass whose activations outgrow the cache runs slower per view: the torch step
# takes at most this many input pixels a pass (64 views of 32 px, 16 of 64 px), whatever the batch
# (benchmarks/cpu_pass_size.py). GPUs take the whole batch.
CPU_PASS_PIXELS = 64 * 32 * 32


class Detector:
    """A loaded bundle. `predict` takes a path, bytes, a PIL image, an array, or a list of them."""

    def __init__(self, model, info: BundleInfo, device: str = "cpu", threshold: float | None = None,
                 onnx=None, runtime_note: str = "", precision: str = "float32"):
        self.model = model
        self.info = info
        self.device = device
        self.policy = info.policy
        self.calibration = info.calibration
        self.threshold = self.calibration.threshold if threshold is None else check_threshold(threshold)
        self.onnx = onnx  # an onnx_bundle.OnnxModel: the model step runs in ONNX Runtime
        self.runtime_note = runtime_note  # why `runtime="auto"` or the precision is what it is ("" otherwise)
        self.precision = precision  # the torch step's number format (realjudge.precision); onnx runs float32
        # The torch step's network: `model` with batch norm folded into the convolutions, made at the
        # first batch (models.folding). `model` itself stays as trained, for explanations.
        self._folded = None

    def with_threshold(self, threshold: float) -> "Detector":
        """The same model, runtime and calibration, deciding at another threshold."""
        det = Detector(self.model, self.info, self.device, threshold, self.onnx, self.runtime_note, self.precision)
        det._folded = self._folded
        return det

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def runtime(self) -> str:
        """Which runtime the model step runs on: "torch" or "onnx"."""
        return "torch" if self.onnx is None else "onnx"

    def __repr__(self) -> str:
        return (f"Detector({self.name!r}, arch={self.info.arch!r}, threshold={self.threshold:.4f}, "
                f"runtime={self.runtime!r}, precision={self.precision!r})")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """N x S x S x 3 uint8 views -> N raw logits (the model step of realjudge.pipeline)."""
        if len(batch) == 0:
            return np.zeros(0, np.float32)
        if self.onnx is not None:
            return self.onnx(self.policy.normalise(batch).numpy())
        import torch

        from .precision import autocast

        x = self.policy.model_input(batch, self.device)
        if self._folded is None:
            from .models.folding import fold_batchnorm

            self._folded = fold_batchnorm(self.model, x)
        step = len(x) if x.device.type != "cpu" else max(1, CPU_PASS_PIXELS // (x.shape[2] * x.shape[3]))
        with torch.inference_mode(), autocast(self.precision, x.device):
            return np.concatenate([self._folded(x[i:i + step]).float().cpu().numpy() for i in range(0, len(x), step)])

    def predict(self, inputs: Any, names: list[str] | None = None, threshold: float | None = None,
                batch_size: int = 256, verdict: str = "pixels", provenance: bool = True) -> Record | list[Record]:
        """Score one input (returns a Record) or a list (returns a list of Records, in order).

        `verdict="combined"` lets strong provenance override the pixel verdict (the record says so);
        `provenance=False` skips reading it."""
        return Router.single(self).predict(inputs, names, threshold, batch_size, verdict, provenance)

    def predict_iter(self, items: Iterable[tuple[Any, str]], threshold: float | None = None, batch_size: int = 256,
                     workers: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS, verdict: str = "pixels",
                     provenance: bool = True) -> Iterator[Record]:
        """Stream records for (input, name) pairs, in order; `workers` decoding processes."""
        return Router.single(self).predict_iter(items, threshold, batch_size, workers, max_pixels, verdict, provenance)

    def explain(self, image: Any, method: str = "gradcam", target: str = "verdict", name: str | None = None):
        """Where the evidence lies: an Explanation with `.heatmap`, `.overlay`, `.record` (see realjudge.explain)."""
        return Router.single(self).explain(image, method=method, target=target, name=name)


AUTO_NAMES = (None, "", "auto")


def load(name_or_path: str | None = None, device: str = "auto", threshold: float | None = None,
         runtime: str = "torch", precision: str = "bundle"):
    """Load a shipped detector by name, or a bundle folder / zip by path.

    With no name (or "auto") it returns the router over the shipped detectors, which picks one by
    image size like `realjudge detect`: both sides at most 64 px -> `cifake`, larger -> `natural`.
    The router has the same `predict`, `predict_iter` and `explain` as a Detector.

    `runtime`: "torch" (default), "onnx" (ONNX Runtime on the CPU: the bundle's model.onnx, else an
    export made on the fly into the cache; needs the `onnx` extra) or "auto" (times both on a warm-up
    batch and keeps the faster; `Detector.runtime_note` says what was measured).

    `precision`: the torch step's number format, "bundle" (the one its calibration was fitted at,
    float32 where the hardware lacks native bfloat16), "float32" or "bfloat16" (realjudge.precision)."""
    from . import precision as _precision
    from .onnx_bundle import check_runtime
    from .runtime import resolve_device

    runtime = check_runtime(runtime)
    _precision.check_precision(precision)
    if name_or_path in AUTO_NAMES:
        return load_for_inputs(None, device, threshold, runtime=runtime, precision=precision)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise UsageError(f"model must be a shipped detector name, a bundle path or 'auto', got {name_or_path!r}")
    name_or_path = str(name_or_path)

    if runtime == "onnx" and device not in ("auto", "cpu"):
        raise UsageError(f"runtime onnx runs on the CPU (onnxruntime); use device cpu or runtime torch, not {device!r}")
    dev = resolve_device("cpu" if runtime == "onnx" else device)
    if runtime == "onnx":
        from .onnx_bundle import require_onnxruntime

        require_onnxruntime()  # before loading anything: the error names the extra to install
    model, info = load_bundle(name_or_path, str(dev))
    import torch

    model = model.to(memory_format=torch.channels_last)
    step, note = _precision.resolve(precision, info.precision, dev)
    det = Detector(model, info, str(dev), threshold, runtime_note=note, precision=step)
    if runtime == "torch":
        return det
    from .errors import ExportError
    from .onnx_bundle import AUTO_VIEWS, open_onnx, time_runtimes

    onnx_note = ("" if info.precision == "float32" else "the onnx runtime computes in float32; the bundle is "
                 f"calibrated at {info.precision}, so scores differ from the calibration's by rounding")
    if runtime == "onnx":
        return Detector(model, info, str(dev), threshold, open_onnx(info), onnx_note)
    try:  # auto: the onnx runtime when it is there and faster
        onnx_det = Detector(model, info, str(dev), threshold, open_onnx(info), onnx_note)
    except (UsageError, ExportError) as err:
        det.runtime_note = "; ".join(filter(None, [f"runtime auto chose torch: the onnx runtime is unavailable ({err})",
                                                   det.runtime_note]))
        return det
    t = time_runtimes(det.logits, onnx_det.logits, info.policy.size)
    pick = onnx_det if t["onnx"] < t["torch"] else det
    other = "torch" if pick is onnx_det else "onnx"
    chose = (f"runtime auto chose {pick.runtime}: {t[pick.runtime] * 1e3:.1f} ms against {other}'s "
             f"{t[other] * 1e3:.1f} ms on a warm-up batch of {AUTO_VIEWS} views "
             f"({torch.get_num_threads()} threads, torch in {det.precision})")
    pick.runtime_note = "; ".join(filter(None, [chose, pick.runtime_note]))  # a precision note stays
    return pick


def load_for_inputs(model: str | None, device: str = "auto", threshold: float | None = None,
                    provenance: bool = True, runtime: str = "torch", precision: str = "bundle"):
    """A router (`realjudge.router`) over one named model, or over the shipped small and natural detectors (no model, or "auto")."""
    if model and model != "auto":
        return Router.single(load(model, device, threshold, runtime, precision), provenance)
    shipped = shipped_names()
    if SMALL_MODEL not in shipped:
        raise UsageError("no shipped detector is installed; pass --model PATH to a bundle")
    dets = {SMALL_MODEL: load(SMALL_MODEL, device, threshold, runtime, precision)}
    if NATURAL_MODEL in shipped:
        dets[NATURAL_MODEL] = load(NATURAL_MODEL, device, threshold, runtime, precision)
    return Router(dets, SMALL_MODEL, NATURAL_MODEL if NATURAL_MODEL in dets else SMALL_MODEL, provenance)
