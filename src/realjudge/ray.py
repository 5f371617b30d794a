"""Batch detection on Ray Data: the one scoring path (`realjudge.pipeline`) inside an actor pool.

    import ray, realjudge.ray
    ds = ray.data.read_binary_files("s3://bucket/images/", include_paths=True)
    records = realjudge.ray.detect_dataset(ds)          # a Dataset of record rows
    records.write_parquet("s3://bucket/records/")

- `detect_dataset(ds)`: rows {"bytes", "path"} (what `read_binary_files(include_paths=True)` gives) to
  record rows. Scoring runs in `map_batches` with an actor pool: each actor loads the router once in
  its `__init__`, then reads, decodes, routes and scores its batches through `pipeline.run`, so the
  decoding is spread over the cluster with the model. Nothing is dropped: a row that cannot be decoded
  gives a record whose `error` says why, as in `realjudge detect`.
- `read_inputs(paths)`: what `realjudge detect --engine ray` reads: local files, folders, globs and
  archives (listed by `data.inputs.expand_inputs` like the local CLI, their bytes read by tasks pinned
  to the driver's node, which is the node that has them) and URIs such as s3:// or gs:// (read by
  `ray.data.read_binary_files` on the cluster, with the credentials the cluster has).
- A record row has the fields of `Record.to_dict()` in that order. Its nested values (`facts`,
  `provenance`, `warnings`) are JSON text, the very `json.dumps` of the value that the local jsonl
  line holds; `record_dict(row)` gives back the dict `Record.to_dict()` gives.

This module is `realjudge.ray`; it imports the `ray` package by its absolute name (`import ray`), so
the two never shadow each other.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .data.decode import DEFAULT_MAX_PIXELS
from .errors import DecodeError, UsageError
from .records import Record

RAY_EXTRA = "pip install 'realjudge[ray]'"
COLUMNS = tuple(Record.__dataclass_fields__)  # the order of Record.to_dict()
NESTED = ("facts", "provenance", "warnings")  # JSON text in a row, the value itself in a record dict
FLOATS = ("p_fake", "threshold", "logit")
READ_ERROR = "read_error"  # an input row's column: [name, reason] of a DecodeError met while reading
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
LOCAL_ROWS_PER_BLOCK = 256
# Tasks reading local files at once: they reserve no CPU (reading is I/O, and the actors may hold every
# CPU slot), so without a bound Ray would start a worker process for each.
LOCAL_READERS = 2


def require_ray():
    """The `ray` package with Ray Data, or a one-line UsageError naming the extra that installs it."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise UsageError(f"Ray is not installed ({err.name or 'ray'} is missing): {RAY_EXTRA}") from None
    return ray


# ------------------------------------------------------------------------------------------- rows
def record_schema():
    """The Arrow schema of a record row: floats as float64, strings and JSON text as strings."""
    import pyarrow as pa

    return pa.schema([(c, pa.float64() if c in FLOATS else pa.string()) for c in COLUMNS])


def record_row(rec: Record) -> dict[str, Any]:
    """A Record as a row: `to_dict()` with each nested value as its JSON text (None stays None)."""
    d = rec.to_dict()
    assert tuple(d) == COLUMNS, "a Record field this module does not know: update FLOATS/NESTED"
    for k in NESTED:
        d[k] = None if d[k] is None else json.dumps(d[k])
    return d


def record_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A record row back to the dict `Record.to_dict()` gives (what the local jsonl line holds)."""
    d = {c: row.get(c) for c in COLUMNS}
    for k in NESTED:
        if isinstance(d[k], str):
            d[k] = json.loads(d[k])
    return d


# ------------------------------------------------------------------------------------------ inputs
def is_uri(path: str) -> bool:
    """s3://, gs://, file://...: read by `ray.data.read_binary_files`, not listed here."""
    return bool(URI.match(path))


def read_inputs(paths: Iterable[str]):
    """(Dataset of {"path", "bytes", "read_error"} rows, missing local paths): `list_inputs` then
    `inputs_dataset`. The Dataset is None when there is no input at all."""
    samples, uris, missing = list_inputs(paths)
    return inputs_dataset(samples, uris), missing


def list_inputs(paths: Iterable[str]):
    """(local samples, URIs, missing local paths), without Ray: local paths are expanded as the local
    `detect` expands them (same locators, same image-name filter, archives opened)."""
    from .data.inputs import expand_inputs

    paths = list(paths)
    local = [p for p in paths if not is_uri(p)]
    samples, missing = expand_inputs(local) if local else ([], [])
    return samples, [p for p in paths if is_uri(p)], missing


def inputs_dataset(samples, uris: list[str]):
    """The Dataset of input rows. Only the listing happened on the driver: the local samples' bytes are
    read by Ray tasks pinned to this node (the one that has the files), a block at a time, so they
    stream. URIs go to `read_binary_files`, whose read tasks run anywhere on the cluster; a URI that
    names a folder (no suffix, or a trailing /) keeps image files only, one that names a file is read
    whatever its suffix."""
    ray = require_ray()
    from .data.containers import IMAGE_EXTENSIONS

    parts = []
    if samples:
        rows = [{"path": s.locator, "unreadable": s.meta.get("unreadable")} for s in samples]
        node = ray.get_runtime_context().get_node_id()
        blocks = math.ceil(len(rows) / LOCAL_ROWS_PER_BLOCK)
        parts.append(ray.data.from_items(rows, override_num_blocks=blocks)
                     .map_batches(_read_local, fn_kwargs={"cwd": os.getcwd()}, batch_format="pyarrow",
                                  batch_size=None, num_cpus=0,
                                  compute=ray.data.TaskPoolStrategy(size=min(blocks, LOCAL_READERS)),
                                  label_selector={"ray.io/node-id": node}))
    extensions = sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    for uri in uris:
        folder = uri.endswith("/") or not Path(uri.split("://", 1)[1]).suffix
        ds = ray.data.read_binary_files(uri, include_paths=True, file_extensions=extensions if folder else None)
        # pyarrow names s3://bucket/key `bucket/key`: records name the URI the user gave
        parts.append(ds.map_batches(_with_scheme, fn_kwargs={"scheme": uri.split("://", 1)[0]},
                                    batch_format="pyarrow", batch_size=None))
    if not parts:
        return None
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _read_local(batch, cwd: str):
    """Bytes of local samples (a task on the driver's node), or the DecodeError the local CLI would meet.

    A worker's working folder need not be the driver's: a relative locator is read from `cwd`, the
    driver's, and keeps its name as typed."""
    import pyarrow as pa

    from .data.samples import Sample

    out_bytes, errors = [], []
    for path, unreadable in zip(batch.column("path").to_pylist(), batch.column("unreadable").to_pylist()):
        where = os.path.join(cwd, path)
        sample = Sample(where, source="input", meta={} if unreadable is None else {"unreadable": unreadable})
        try:
            data, err = sample.read_bytes(), None
        except DecodeError as e:
            data, err = None, [path if e.name == where else e.name, e.reason]
        except Exception as e:  # noqa: BLE001  (any other failure is still one record, never a lost row)
            data, err = None, [path, f"unreadable ({type(e).__name__}: {e})"]
        out_bytes.append(data)
        errors.append(None if err is None else json.dumps(err))
    return pa.table({"path": batch.column("path"), "bytes": pa.array(out_bytes, pa.large_binary()),
                     READ_ERROR: pa.array(errors, pa.string())})


def _with_scheme(batch, scheme: str):
    """Put back the scheme pyarrow strips (`bucket/key` -> `s3://bucket/key`, `/a/b` -> `file:///a/b`)."""
    import pyarrow as pa

    paths = [p if p is None or is_uri(p) else f"{scheme}://{p}" for p in batch.column("path").to_pylist()]
    return batch.set_column(batch.schema.get_field_index("path"), "path", pa.array(paths, pa.string()))


# ------------------------------------------------------------------------------------------ scoring
class Scorer:
    """The actor's callable: loads the router once (in `__init__`), then scores batches of rows.

    `bundle_zip` is a bundle's bytes when the model is a local path the other nodes may not have: the
    driver ships them once per actor and the actor loads them from a temporary file."""

    def __init__(self, model: str | None, bundle_zip: bytes | None, device: str, threshold: float | None,
                 provenance: bool, verdict: str, batch_size: int, max_pixels: int, threads: int | None,
                 runtime: str = "torch", precision: str = "bundle"):
        import torch

        from .detector import load_for_inputs

        if threads:
            torch.set_num_threads(threads)
        self._tmp = None
        if bundle_zip is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="realjudge-bundle-")
            model = str(Path(self._tmp.name) / "bundle.zip")
            Path(model).write_bytes(bundle_zip)
        self.router = load_for_inputs(model, device=device, threshold=threshold, provenance=provenance,
                                      precision=precision, **_runtime(runtime))
        self.options = dict(threshold=threshold, batch_size=batch_size, workers=0, max_pixels=max_pixels,
                            verdict=verdict, provenance=provenance)

    def __call__(self, batch):
        import pyarrow as pa

        names = batch.column_names
        if "bytes" not in names or "path" not in names:
            raise ValueError(f"detect_dataset needs rows with 'bytes' and 'path' (read_binary_files(..., "
                             f"include_paths=True) gives them); these rows have {names}")
        paths = batch.column("path").to_pylist()
        blobs = batch.column("bytes").to_pylist()
        errors = batch.column(READ_ERROR).to_pylist() if READ_ERROR in names else [None] * len(paths)
        items = []
        for i, (path, data, err) in enumerate(zip(paths, blobs, errors)):
            name = str(path) if path is not None else f"<row {i}>"
            if err is not None:
                items.append((DecodeError(*json.loads(err)), name))
            elif data is None:
                items.append((DecodeError(name, "no bytes in this row"), name))
            else:
                items.append((data, name))
        records = self._score(items)
        return pa.Table.from_pylist([record_row(r) for r in records], schema=record_schema())

    def _score(self, items: list[tuple[Any, str]]) -> list[Record]:
        """`pipeline.run` over the batch; should anything raise, item by item, so that only the item that
        raised becomes an error record (scored through the same path, as an unreadable input)."""
        from .pipeline import run

        try:
            return list(run(self.router, items, **self.options))
        except Exception:  # noqa: BLE001  (a record for every row, whatever went wrong)
            out: list[Record] = []
            for obj, name in items:
                try:
                    out.extend(run(self.router, [(obj, name)], **self.options))
                except Exception as err:  # noqa: BLE001
                    reason = f"internal error ({type(err).__name__}: {' '.join(str(err).split())})"
                    out.extend(run(self.router, [(DecodeError(name, reason), name)], **self.options))
            return out


def _bundle_payload(model: str | None) -> tuple[str | None, bytes | None]:
    """(model name, bundle zip bytes to ship): a local bundle path travels as bytes, a shipped name as itself."""
    if model in (None, "", "auto"):
        return None, None
    p = Path(model)
    if not p.exists():
        return model, None  # a shipped name (a path no node has fails on the driver first)
    if p.is_file():
        return model, p.read_bytes()
    from .bundle import zip_bundle

    with tempfile.TemporaryDirectory() as tmp:
        return model, zip_bundle(p, Path(tmp) / "bundle.zip").read_bytes()


_CHECKED: set = set()


def check_options(model: str | None, threshold: float | None, verdict: str = "pixels", batch_size: int = 256,
                  provenance: bool = True, runtime: str = "torch", precision: str = "bundle",
                  device: str = "cpu") -> None:
    """The model's, the threshold's, the verdict mode's, the runtime's and the precision's errors
    (one-line UsageErrors), on the driver, before Ray starts anything: the router is loaded once here,
    on the CPU. bfloat16 is checked against the driver's CPU only for CPU actors (`device` "cpu"): the
    driver cannot see a GPU actor's hardware, and an actor that cannot run it fails to start."""
    from .detector import load_for_inputs
    from .pipeline import check_verdict_mode
    from .precision import check_precision

    check_verdict_mode(verdict)
    check_precision(precision)
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    on_driver = precision if device == "cpu" or precision != "bfloat16" else "bundle"
    key = (model, threshold, provenance, runtime, on_driver)
    if key not in _CHECKED:
        load_for_inputs(model, device="cpu", threshold=threshold, provenance=provenance, precision=on_driver,
                        **_runtime(runtime))
        _CHECKED.add(key)


def detect_dataset(ds, model: str | None = None, threshold: float | None = None, *, device: str = "auto",
                   verdict: str = "pixels", provenance: bool = True, batch_size: int = 256,
                   actors: int | tuple[int, int] | None = None, num_cpus: float = 1, num_gpus: float = 0,
                   max_pixels: int = DEFAULT_MAX_PIXELS, runtime: str = "torch", precision: str = "bundle"):
    """A Dataset of record rows (`record_schema()`), one per input row of {"bytes", "path"}.

    `model`: a shipped name or a bundle path (default: the shipped detectors, routed by size); a local
    bundle path is shipped to the actors as bytes. `actors`: the pool's size, or (min, max) for an
    autoscaling pool (default: from 1 up to the cluster's CPUs / `num_cpus`, or its GPUs / `num_gpus`).
    Each actor holds `num_cpus` CPUs (its torch threads) and `num_gpus` GPUs; `device="auto"` is cuda in
    an actor that holds a GPU and cpu in one that does not, and `device="cuda"` gives each actor a GPU.
    `batch_size` rows per call, scored as `realjudge detect --batch-size` scores them. `runtime`: the
    model step's runtime (torch, onnx or auto), as `realjudge detect --runtime`. The model, threshold
    and verdict mode are checked here, on the driver, before any actor starts: a UsageError names what
    is wrong. `precision`: the torch step's number format, as `realjudge detect --precision` (each
    actor resolves "bundle" on its own device). The Dataset is lazy, as Ray's are: nothing is scored
    until it is consumed."""
    ray = require_ray()
    if device == "auto":
        device = "cuda" if num_gpus else "cpu"
    elif device.startswith("cuda") and not num_gpus:
        num_gpus = 1  # an actor on cuda holds a GPU, or Ray hides every GPU from it
    check_options(model, threshold, verdict, batch_size, provenance, runtime, precision, device)
    name, bundle_zip = _bundle_payload(model)
    if isinstance(actors, int):
        compute = ray.data.ActorPoolStrategy(size=actors)
    else:
        low, high = actors if actors is not None else (1, None)
        if high is None:  # as many actors as the cluster has room for
            have = ray.cluster_resources()
            high = int(have.get("GPU", 0) // num_gpus) if num_gpus else int(have.get("CPU", 1) // (num_cpus or 1))
            high = max(1, high)
        compute = ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    threads = max(1, int(num_cpus)) if num_cpus else None
    return ds.map_batches(
        Scorer, batch_format="pyarrow", batch_size=batch_size, compute=compute, num_cpus=num_cpus,
        num_gpus=num_gpus or None, udf_modifying_row_count=False,
        fn_constructor_kwargs=dict(model=name, bundle_zip=bundle_zip, device=device, threshold=threshold,
                                   provenance=provenance, verdict=verdict, batch_size=batch_size,
                                   max_pixels=max_pixels, threads=threads, runtime=runtime,
                                   precision=precision))


def _runtime(runtime: str) -> dict:
    """The model step's runtime for `load_for_inputs` (torch, the default, passes nothing)."""
    return {} if runtime == "torch" else {"runtime": runtime}
