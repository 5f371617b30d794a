"""The one scoring path: read -> decode -> route -> views -> model -> calibrate -> record.

The CLI (`detect`, `explain`, `evaluate`), the Python API, the service and the explanations all
score through these functions, so that each rule lives once: the size rule in `Router.route`, the
views in the bundle's `InputPolicy`, the verdict and band in `Calibration.verdict`, the threshold
check in `calibrate.check_threshold`.

- `prepare(obj, name, router)`: one input to a `Prepared` (its views, the model its size picks, its
  provenance, facts and warnings). Never raises: a file that cannot be read becomes an error.
- `score(router, prepared)`: a batch of Prepared to Records: one forward pass per model, an image's
  logit the mean of its views' logits, then calibration and the verdict.
- `run(router, items)`: both, streamed in input order with batching and optional decoding workers.
- `predict(router, inputs)`: the surface every detector shares: one input gives a Record, a list a list.
"""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable, Iterator

import numpy as np

from .calibrate import check_threshold
from .data.decode import DEFAULT_MAX_PIXELS, decode, read_file
from .errors import DecodeError, UsageError
from .provenance import combine
from .provenance import read as read_provenance
from .provenance import verdict as provenance_verdict
from .records import Prepared, Record

VERDICT_MODES = ("pixels", "combined")
OVERLAP_SHARE = 0.25


def check_verdict_mode(verdict: str) -> str:
    if verdict not in VERDICT_MODES:
        raise UsageError(f"verdict must be one of {', '.join(VERDICT_MODES)}, got {verdict!r}")
    return verdict


def prepare(obj: Any, name: str | None, router, max_pixels: int = DEFAULT_MAX_PIXELS, provenance: bool = True,
            keep_pixels: bool = False) -> Prepared:
    """Read, decode, route by size and apply the chosen model's policy. Never raises.

    `obj` is a Sample, a path, bytes, a PIL image, an array, a Decoded image, or a DecodeError raised
    upstream (an archive member that could not be read, a perturbation that failed). With no `name`
    the record is named as the decoder names the input (its path, `<bytes>`, `<array>`...)."""
    if isinstance(obj, DecodeError):
        return Prepared(name or obj.name, None, error=str(obj))
    if name is None and (isinstance(obj, (str, os.PathLike)) or hasattr(obj, "locator")):
        name = input_name(obj, 0)
    t0 = time.perf_counter()
    try:
        # The file is read once: the same bytes feed the decoder and the provenance readers.
        if hasattr(obj, "read_bytes"):
            data = obj.read_bytes()
        elif isinstance(obj, (str, os.PathLike)):
            data = read_file(obj, name)
        else:
            data = obj
        decoded = decode(data, name, max_pixels)
    except DecodeError as err:
        return Prepared(name or err.name, None, error=str(err))
    name = name or decoded.name
    t1 = time.perf_counter()
    # Pixels handed in as a PIL image or an array carry no file, so there is no provenance to read.
    has_file = isinstance(data, (bytes, bytearray, memoryview))
    findings = ([f.to_dict() for f in read_provenance(bytes(data), decoded.pixels, header=decoded.header)]
                if provenance and has_file else None)
    t2 = time.perf_counter()
    h, w = decoded.pixels.shape[:2]
    model = router.route(w, h)
    policy = router.detectors[model].policy
    out = Prepared(name, None, model=model, facts=decoded.facts, provenance=findings,
                   warnings=router.size_warnings(model, w, h),
                   pixels=decoded.pixels if keep_pixels else None,
                   timings={"decode_s": t1 - t0, "provenance_s": t2 - t1})
    try:
        views, out.note = policy.views(decoded.pixels)
    except UsageError as err:
        out.error = f"{name}: {err}"
        return out
    out.views = np.stack(views)
    return out


def score(router, prepared: list[Prepared], threshold: float | None = None) -> list[Record]:
    """Records for a batch, in order. Unreadable inputs give records that name no model and no threshold."""
    out: list[Record | None] = [None] * len(prepared)
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prepared):
        if p.error is None:
            groups.setdefault(p.model, []).append(i)
        else:
            out[i] = Record(p.name, error=p.error, provenance=p.provenance,
                            provenance_verdict=provenance_verdict(p.provenance), warnings=list(p.warnings))
    for name, rows in groups.items():
        det = router.detectors[name]
        t = det.threshold if threshold is None else threshold
        views = [prepared[i].views for i in rows]
        starts = np.cumsum([0] + [len(v) for v in views[:-1]])
        per_view = det.logits(np.concatenate(views))
        logits = np.add.reduceat(per_view, starts) / np.array([len(v) for v in views])
        probs = det.calibration.probability(logits)
        for i, logit, prob in zip(rows, logits, probs):
            p = prepared[i]
            prob, logit = float(prob), float(logit)
            out[i] = Record(p.name, prob, det.calibration.verdict(prob, t), t, det.name, None, logit, p.note, p.facts,
                            p.provenance, provenance_verdict(p.provenance), warnings=list(p.warnings))
    return out  # type: ignore[return-value]


def run(router, items: Iterable[tuple[Any, str]], threshold: float | None = None, batch_size: int = 256,
        workers: int | None = 0, max_pixels: int = DEFAULT_MAX_PIXELS, verdict: str = "pixels",
        provenance: bool = True, keep_pixels: bool = False) -> Iterator[Record] | Iterator[tuple[Record, Prepared]]:
    """Records for (input, name) pairs, in input order; with `keep_pixels`, (Record, Prepared) pairs whose
    Prepared holds the decoded pixels (what an explanation draws on, so that nothing is decoded twice).

    `workers` decoding processes; `None` decides from the first batch, scored in this process:
    decoding moves to worker processes only when it costs more than a quarter of the model's time.
    On few cores, worker processes and the model's threads compete for the same cores, so
    overlapping a cheap stage loses more than it gains (measured: benchmarks/detect_speed.py)."""
    check_verdict_mode(verdict)
    if threshold is not None:
        threshold = check_threshold(threshold)
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    items = iter(items)
    options = (router, max_pixels, provenance, keep_pixels)
    if workers is None:
        timing = {"decode": 0.0, "model": 0.0}
        first = []
        for obj, name in itertools.islice(items, batch_size):
            t = time.perf_counter()
            first.append(prepare(obj, name, *options))
            timing["decode"] += time.perf_counter() - t
        yield from _batches(router, iter(first), batch_size, threshold, verdict, keep_pixels, timing)
        cores = os.cpu_count() or 1
        workers = cores if cores > 1 and timing["decode"] > OVERLAP_SHARE * timing["model"] else 0
    jobs = ((obj, name) + options for obj, name in items)
    pool = ProcessPoolExecutor(workers) if workers > 0 else None
    try:
        prepared = pool.map(_prepare_job, jobs, chunksize=64) if pool else map(_prepare_job, jobs)
        yield from _batches(router, prepared, batch_size, threshold, verdict, keep_pixels)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def predict(router, inputs: Any, names: list[str] | None = None, **options):
    """One input gives a Record, a list or tuple gives a list of Records in order."""
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    labels = names or [input_name(o, i) for i, o in enumerate(items)]
    if len(labels) != len(items):
        raise UsageError(f"names: {len(labels)} names for {len(items)} inputs")
    records = list(run(router, zip(items, labels), **options))
    return records[0] if single else records


def _prepare_job(args) -> Prepared:
    return prepare(*args)


def _batches(router, prepared: Iterator[Prepared], batch_size: int, threshold, verdict: str, keep_pixels: bool,
             timing: dict | None = None):
    """Score prepared inputs in batches of about `batch_size` views; apply the verdict mode."""
    pending: list[Prepared] = []
    n_views = 0
    for p in itertools.chain(prepared, [None]):
        if p is not None:
            pending.append(p)
            n_views += 0 if p.views is None else len(p.views)
            if n_views < batch_size:
                continue
        if not pending:
            break
        t = time.perf_counter()
        records = score(router, pending, threshold)
        if timing is not None:
            timing["model"] += time.perf_counter() - t
        if verdict == "combined":
            records = [combine(r) for r in records]
        yield from zip(records, pending) if keep_pixels else records
        pending, n_views = [], 0


def input_name(obj: Any, i: int) -> str:
    if isinstance(obj, (str, os.PathLike)):
        return str(obj)
    if hasattr(obj, "locator"):
        return obj.locator
    return f"<input {i}>"
