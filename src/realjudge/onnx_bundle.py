"""A bundle's ONNX form: export it, check it against torch, and run it through ONNX Runtime.

The exported graph is the network alone: input `input`, N x 3 x S x S float32, the views already
normalised by the bundle's input policy (`InputPolicy.normalise`, NCHW); output `logit`, N float32;
the batch axis is dynamic. Everything around it (decoding, views, calibration, the record) stays in
`realjudge.pipeline`, so both runtimes make the same records; only `Detector.logits` differs.

Where the ONNX file lives, and how a Detector finds it (`find_onnx`):
- `model.onnx` in the bundle (folder or zip), used only when bundle.json's `onnx` entry names its
  sha256 and the sha256 of the bundle's current model.safetensors (a bundle rewritten since the
  export has a stale file, which is ignored);
- else the cache, `$REALJUDGE_CACHE/onnx/NAME-KEY/` (default `~/.cache/realjudge`), keyed by the
  weights and the architecture; `runtime="onnx"` exports there on the fly when neither
  exists (a few seconds, checked like `realjudge export`), so it needs no step beforehand.
`realjudge export BUNDLE --onnx` writes into a bundle folder the user owns; given a shipped bundle
(inside the installed package), a zip or a folder it cannot write, it writes into the cache
instead, leaving the package as installed; `--out DIR` writes a complete bundle copy with model.onnx.

Every export is checked before it is kept: ONNX Runtime and torch (the Detector's own torch step,
channels-last) score the same views (generated noise and image-like views, plus the views of any
images passed in) in batches of 1, 7 and the rest, and the largest |logit difference| must be at
most `TOLERANCE` (1e-4: float32 kernels in another order differ by ~1e-5 on these networks; a
wrong graph differs by far more). The result is recorded in the `onnx` entry.

The exporter: torch's TorchScript-based `torch.onnx.export(dynamo=False)` (seconds, no extra
package); where a torch release no longer has it, the torch.export-based one (needs onnxscript,
part of the `onnx` extra).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import SHIPPED_DIR, BundleInfo, _read_bundle_files, load_bundle, resolve_bundle_path
from .errors import ExportError, UsageError

ONNX_FILE = "model.onnx"
CACHE_ENTRY = "onnx.json"
OPSET = 17  # ONNX Runtime has run opset 17 since 1.13 (2022)
TOLERANCE = 1e-4
RUNTIMES = ("torch", "onnx", "auto")
INSTALL_HINT = "pip install 'realjudge[onnx]'"
CHECK_BATCHES = (1, 7)  # then the rest in one batch: the dynamic batch axis is exercised
MAX_IMAGE_VIEWS = 256
AUTO_VIEWS = 64  # the warm-up batch that `runtime="auto"` times both runtimes on
AUTO_REPEATS = 3


def check_runtime(runtime: str) -> str:
    if not isinstance(runtime, str) or runtime not in RUNTIMES:
        raise UsageError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(f"the onnx runtime needs onnxruntime, which is not installed: {INSTALL_HINT}") from None
    return onnxruntime


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise UsageError(f"exporting to ONNX needs the onnx package, which is not installed: {INSTALL_HINT}") from None
    return onnx


def cache_dir() -> Path:
    from .data.cache import cache_root

    return cache_root() / "onnx"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_key(meta: dict, weights_sha: str) -> str:
    """The cache folder of a bundle's export: its name and a hash of its architecture and weights."""
    spec = json.dumps({"arch": meta["arch"], "arch_kwargs": meta.get("arch_kwargs", {}), "weights": weights_sha},
                      sort_keys=True)
    return f"{meta['name']}-{_sha256(spec.encode())[:16]}"


def is_shipped(path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(SHIPPED_DIR.resolve())
    except OSError:
        return False


# ------------------------------------------------------------------------------------ finding
@dataclass
class OnnxFile:
    """An ONNX graph of a bundle, its `onnx` entry and where it came from ("bundle" or "cache")."""

    data: bytes
    entry: dict
    where: str
    location: str


def _bundle_onnx_bytes(path: Path) -> bytes | None:
    if path.is_dir():
        f = path / ONNX_FILE
        return f.read_bytes() if f.is_file() else None
    with zipfile.ZipFile(path) as z:
        names = {Path(n).name: n for n in z.namelist()}
        return z.read(names[ONNX_FILE]) if ONNX_FILE in names else None


def _entry_matches(entry: dict | None, data: bytes | None, weights_sha: str) -> bool:
    return (isinstance(entry, dict) and data is not None and entry.get("sha256") == _sha256(data)
            and entry.get("weights_sha256") == weights_sha)


def find_onnx(name_or_path: str | Path) -> tuple[OnnxFile | None, str]:
    """The bundle's valid ONNX graph (bundle first, then the cache) or None, and a one-line status."""
    path = resolve_bundle_path(name_or_path)
    meta, weights, _card = _read_bundle_files(path)
    wsha = _sha256(weights)
    data = _bundle_onnx_bytes(path)
    entry = meta.get("onnx")
    if _entry_matches(entry, data, wsha):
        return OnnxFile(data, entry, "bundle", str(path / ONNX_FILE) if path.is_dir() else f"{path}::{ONNX_FILE}"), "bundle"
    stale = data is not None
    folder = cache_dir() / cache_key(meta, wsha)
    f, e = folder / ONNX_FILE, folder / CACHE_ENTRY
    if f.is_file() and e.is_file():
        data = f.read_bytes()
        try:
            entry = json.loads(e.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            entry = None
        if _entry_matches(entry, data, wsha):
            return OnnxFile(data, entry, "cache", str(f)), "cache"
    why = ("the bundle's model.onnx is stale or unrecorded (its weights changed since the export, or bundle.json "
           "has no matching onnx entry)" if stale else "no model.onnx in the bundle nor in the cache")
    return None, why


# ------------------------------------------------------------------------------------ export
def check_views(policy, images: list | tuple = (), n_generated: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 views the check scores: uniform noise, image-like views (smooth gradients, some with a
    one-pixel checkerboard), and the policy's views of `images` (paths of files or folders)."""
    s = policy.size
    rng = np.random.default_rng(seed)
    half = n_generated // 2
    noise = rng.integers(0, 256, (half, s, s, 3), dtype=np.uint8)
    y, x = np.mgrid[0:s, 0:s] / s
    smooth = []
    for i in range(n_generated - half):
        base = np.stack([np.sin(x * rng.uniform(1, 4) + rng.uniform(0, 6)), np.cos(y * rng.uniform(1, 4)),
                         np.sin((x + y) * rng.uniform(1, 3))], -1)
        img = 127 + 100 * base + rng.normal(0, 3, (s, s, 3))
        if i % 2:
            img += ((np.indices((s, s)).sum(0) % 2) * 2 - 1)[..., None] * 12
        smooth.append(np.clip(img, 0, 255).astype(np.uint8))
    views = [noise, np.stack(smooth)]
    if images:
        views.append(_image_views(policy, images))
    return np.concatenate([v for v in views if len(v)])


def _image_views(policy, images) -> np.ndarray:
    from .data.decode import decode_bytes
    from .data.inputs import expand_inputs
    from .errors import DecodeError

    samples, missing = expand_inputs([str(p) for p in images])
    if missing:
        raise UsageError(f"{missing[0]}: no such file or folder")
    out: list[np.ndarray] = []
    for sample in samples:
        try:
            pixels = decode_bytes(sample.read_bytes(), sample.locator).pixels
        except DecodeError as err:
            raise UsageError(f"check image {err}") from None
        out.extend(policy.views(pixels)[0])
        if len(out) >= MAX_IMAGE_VIEWS:
            break
    if not out:
        raise UsageError("the check images hold no image")
    return np.stack(out[:MAX_IMAGE_VIEWS])


def _export_graph(model, size: int, path: Path, opset: int) -> tuple[str, int]:
    """Write the network's ONNX graph to `path`; (exporter, opset written)."""
    import inspect

    import torch

    dummy = torch.zeros(2, 3, size, size)
    names = {"input_names": ["input"], "output_names": ["logit"]}
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = inspect.signature(torch.onnx.export).parameters
        try:
            legacy = {"dynamo": False} if "dynamo" in params else {}
            torch.onnx.export(model, (dummy,), str(path), opset_version=opset, do_constant_folding=True,
                              dynamic_axes={"input": {0: "batch"}, "logit": {0: "batch"}}, **names, **legacy)
            return f"torch.onnx.export (TorchScript), torch {torch.__version__}", opset
        except Exception as err:  # a torch without the TorchScript exporter: try the torch.export one
            errors.append(f"TorchScript exporter: {' '.join(str(err).split())[:200]}")
        if "dynamo" in params:
            try:
                import onnxscript  # noqa: F401
            except ImportError:
                raise ExportError(f"{errors[0]}; the torch.export exporter needs onnxscript: {INSTALL_HINT}") from None
            dyn_opset = max(opset, 18)
            try:
                torch.onnx.export(model, (dummy,), str(path), dynamo=True, opset_version=dyn_opset, external_data=False,
                                  verbose=False, dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
                return f"torch.onnx.export (torch.export), torch {torch.__version__}", dyn_opset
            except Exception as err:
                errors.append(f"torch.export exporter: {' '.join(str(err).split())[:200]}")
    raise ExportError("torch could not export the network to ONNX: " + "; ".join(errors))


def session_options(threads: int | None = None):
    """ONNX Runtime on the CPU with as many threads as torch uses (torch.get_num_threads())."""
    ort = require_onnxruntime()
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


class OnnxModel:
    """An ONNX Runtime session over a bundle's graph: normalised N x 3 x S x S float32 -> N logits.

    It pickles (the pipeline's decoding processes receive the router) as its graph's bytes; the
    session is made again on first use after unpickling."""

    def __init__(self, data: bytes, where: str = "", location: str = "", entry: dict | None = None,
                 threads: int | None = None):
        self.data, self.where, self.location, self.entry = data, where, location, entry or {}
        self._threads = threads
        self.session = self._open()
        self.input_name = self.session.get_inputs()[0].name
        self.threads = self.session.get_session_options().intra_op_num_threads

    def _open(self):
        ort = require_onnxruntime()
        try:
            return ort.InferenceSession(self.data, session_options(self._threads), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for a corrupt or unsupported graph
            raise UsageError(f"ONNX Runtime cannot load {self.location or 'the ONNX graph'}: "
                             f"{' '.join(str(err).split())[:200]}") from None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "session"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.session = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.session is None:
            self.session = self._open()
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, np.float32).reshape(len(x))

    def __repr__(self) -> str:
        return f"OnnxModel({self.location!r}, threads={self.threads})"


def torch_logits(model, policy, views: np.ndarray) -> np.ndarray:
    """What the torch runtime gives: the Detector's own step (channels-last, inference mode)."""
    import torch

    with torch.inference_mode():
        return model(policy.model_input(views, "cpu")).float().cpu().numpy()


def onnx_logits(onnx: OnnxModel, policy, views: np.ndarray) -> np.ndarray:
    return onnx(policy.normalise(views).numpy())


def compare(model, onnx: OnnxModel, policy, views: np.ndarray, tolerance: float = TOLERANCE) -> dict:
    """Both runtimes on the same views, ONNX Runtime in batches of 1, 7 and the rest; the largest
    |logit difference| against `tolerance`."""
    ref = torch_logits(model, policy, views)
    cuts = [0]
    for b in CHECK_BATCHES:
        if cuts[-1] + b < len(views):
            cuts.append(cuts[-1] + b)
    cuts.append(len(views))
    got = np.concatenate([onnx_logits(onnx, policy, views[a:b]) for a, b in zip(cuts, cuts[1:])])
    diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    ok = bool(np.isfinite(got).all() and diff <= tolerance)
    return {"views": int(len(views)), "batch_sizes": [b - a for a, b in zip(cuts, cuts[1:])],
            "max_abs_logit_diff": diff, "max_abs_logit": float(np.max(np.abs(ref))), "tolerance": tolerance,
            "passed": ok}


def _check_tolerance(tolerance: float) -> float:
    try:
        tolerance = float(tolerance)
    except (TypeError, ValueError):
        raise UsageError(f"tolerance must be a number, got {tolerance!r}") from None
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise UsageError(f"tolerance must be a finite number >= 0, got {tolerance}")
    return tolerance


def build(name_or_path: str | Path, opset: int = OPSET, tolerance: float = TOLERANCE, images=()) -> tuple[bytes, dict]:
    """Export a bundle's network and check it; (ONNX bytes, the `onnx` entry). Raises ExportError
    when the check fails; nothing is written anywhere."""
    onnx = require_onnx()
    require_onnxruntime()
    tolerance = _check_tolerance(tolerance)
    import torch

    path = resolve_bundle_path(name_or_path)
    model, info = load_bundle(path, "cpu")
    _meta, weights, _card = _read_bundle_files(path)
    views = check_views(info.policy, images)
    with tempfile.TemporaryDirectory(prefix="realjudge-onnx-") as tmp:
        f = Path(tmp) / ONNX_FILE
        exporter, opset = _export_graph(model, info.policy.size, f, opset)
        data = f.read_bytes()
    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as err:
        raise ExportError(f"the exported graph is not valid ONNX: {' '.join(str(err).split())[:200]}") from None
    written = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    session = OnnxModel(data, location="the exported graph")
    check = compare(model.to(memory_format=torch.channels_last), session, info.policy, views, tolerance)
    if not check["passed"]:
        raise ExportError(f"{info.name}: the ONNX export disagrees with torch: largest |logit difference| "
                          f"{check['max_abs_logit_diff']:.3g} over {check['views']} views, above the tolerance "
                          f"{tolerance:g}; nothing was written")
    import onnxruntime

    entry = {"file": ONNX_FILE, "sha256": _sha256(data), "weights_sha256": _sha256(weights), "opset": int(written),
             "input": f"input: N x 3 x {info.policy.size} x {info.policy.size} float32, NCHW, normalised by the input policy",
             "output": "logit: N float32", "exporter": exporter, "onnx": onnx.__version__,
             "onnxruntime": onnxruntime.__version__, "check": check,
             "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return data, entry


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK) and os.access(folder / "bundle.json", os.W_OK)


def export_bundle(name_or_path: str | Path, out: str | Path | None = None, opset: int = OPSET,
                  tolerance: float = TOLERANCE, images=()) -> tuple[Path, dict]:
    """Export and check; write model.onnx and record the `onnx` entry. (the file written, the entry).

    With `out`: a complete bundle copy there (bundle.json with the entry, model.safetensors,
    MODEL_CARD.md, model.onnx). Without: into the bundle folder itself, or into the cache for a
    shipped bundle, a zip or a folder this user cannot write (where `runtime="onnx"` finds it)."""
    path = resolve_bundle_path(name_or_path)
    meta, weights, card = _read_bundle_files(path)
    data, entry = build(path, opset, tolerance, images)
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not (out / "bundle.json").is_file():
            raise UsageError(f"--out {out}: a folder with other files in it; give a new or empty folder")
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "model.safetensors", weights)
        if card:
            _atomic_write(out / "MODEL_CARD.md", card.encode())
        return _write_into_folder(out, meta, data, entry), entry
    if path.is_dir() and not is_shipped(path) and _writable(path):
        return _write_into_folder(path, meta, data, entry), entry
    return _write_into_cache(path, meta, data, entry), entry


def _write_into_folder(folder: Path, meta: dict, data: bytes, entry: dict) -> Path:
    _atomic_write(folder / ONNX_FILE, data)
    _atomic_write(folder / "bundle.json", json.dumps(meta | {"onnx": entry}, indent=2, default=float).encode())
    return folder / ONNX_FILE


# ------------------------------------------------------------------------------------ runtime
def open_onnx(info: BundleInfo, export_if_missing: bool = True) -> OnnxModel:
    """The ONNX Runtime step of a loaded bundle: its model.onnx, else the cached export, else (when
    `export_if_missing`) a fresh export into the cache, checked like `realjudge export`. Loading
    never writes into a bundle."""
    require_onnxruntime()
    found, why = find_onnx(info.path)
    if found is None:
        if not export_if_missing:
            raise UsageError(f"{info.name}: {why}; run `realjudge export {info.path} --onnx`")
        path = resolve_bundle_path(info.path)
        meta, _weights, _card = _read_bundle_files(path)
        data, entry = build(path)
        target = _write_into_cache(path, meta, data, entry)
        found, why = find_onnx(path)
        if found is None:  # pragma: no cover - the export just wrote it
            raise ExportError(f"{info.name}: the export into {target} cannot be read back ({why})")
    return OnnxModel(found.data, found.where, found.location, found.entry)


def _write_into_cache(path: Path, meta: dict, data: bytes, entry: dict) -> Path:
    folder = cache_dir() / cache_key(meta, entry["weights_sha256"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / ONNX_FILE, data)
        _atomic_write(folder / CACHE_ENTRY, json.dumps(entry | {"bundle": str(path)}, indent=2).encode())
    except OSError as err:
        raise UsageError(f"cannot write the ONNX export into the cache {folder}: {err.strerror or err}; set "
                         f"REALJUDGE_CACHE to a writable folder, or `realjudge export {path} --onnx --out DIR`") from None
    return folder / ONNX_FILE


def time_runtimes(torch_step, onnx_step, size: int, n: int = AUTO_VIEWS, repeats: int = AUTO_REPEATS) -> dict:
    """Seconds per batch of `n` generated S x S views for each runtime: one warm-up call, then the
    best of `repeats` (what `runtime="auto"` decides by)."""
    views = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    out = {}
    for name, step in (("torch", torch_step), ("onnx", onnx_step)):
        step(views)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            step(views)
            best = min(best, time.perf_counter() - t)
        out[name] = best
    return out


def describe(name_or_path: str | Path) -> dict:
    """What `realjudge models NAME` says about the ONNX runtime of a bundle."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    found, why = find_onnx(name_or_path)
    out = {"onnxruntime": ort_version, "available": found is not None}
    if found is not None:
        check = found.entry.get("check", {})
        out |= {"where": found.where, "location": found.location, "opset": found.entry.get("opset"),
                "sha256": found.entry.get("sha256"), "max_abs_logit_diff": check.get("max_abs_logit_diff"),
                "tolerance": check.get("tolerance"), "check_views": check.get("views"),
                "exporter": found.entry.get("exporter")}
    else:
        out["status"] = why
    return out
