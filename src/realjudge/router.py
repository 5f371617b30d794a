"""Pick the right detector for each input, and stream records in input order.

With no `--model`, small images (both sides at most `SMALL_SIDE` pixels, CIFAKE-like) go to the
shipped `cifake` detector and larger ones to the shipped natural-resolution detector when one is
installed; every record names the model that scored it.
"""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

import numpy as np

from .records import Prepared, Record, predict_inputs
from .errors import DecodeError, UsageError
from .io.decode import DEFAULT_MAX_PIXELS, decode, read_file
from .provenance import combine, read as read_provenance

SMALL_SIDE = 64
OVERLAP_SHARE = 0.25
VERDICT_MODES = ("pixels", "combined")
SMALL_MODEL, NATURAL_MODEL = "cifake", "natural"


class Router:
    def __init__(self, detectors: dict, small: str, large: str, provenance: bool = True):
        self.detectors = detectors
        self.small, self.large = small, large
        self.provenance = provenance

    def pick(self, width: int, height: int):
        return self.detectors[self.small if max(width, height) <= SMALL_SIDE else self.large]

    @property
    def name(self) -> str:
        return self.small if self.small == self.large else "auto"

    @property
    def threshold(self) -> float | None:
        """The decision threshold when every detector shares one (None when they differ)."""
        values = {d.threshold for d in self.detectors.values()}
        return values.pop() if len(values) == 1 else None

    def __repr__(self) -> str:
        if self.small == self.large:
            return f"Router({self.small!r})"
        return f"Router(<= {SMALL_SIDE} px: {self.small!r}, larger: {self.large!r})"

    def with_options(self, threshold: float | None = None, provenance: bool | None = None) -> "Router":
        """The same detectors under another threshold, or reading provenance or not."""
        dets = self.detectors if threshold is None else {
            n: d.with_threshold(threshold) for n, d in self.detectors.items()}
        return Router(dets, self.small, self.large, self.provenance if provenance is None else provenance)

    def predict(self, inputs, names: list[str] | None = None, threshold: float | None = None, batch_size: int = 256,
                verdict: str = "pixels", provenance: bool = True):
        """Like `Detector.predict`: one input gives a Record, a list gives a list; each picks its detector by size."""
        return predict_inputs(self.predict_iter, inputs, names, threshold=threshold, batch_size=batch_size,
                              verdict=verdict, provenance=provenance)

    def predict_iter(self, items, threshold: float | None = None, batch_size: int = 256, workers: int = 0,
                     max_pixels: int = DEFAULT_MAX_PIXELS, verdict: str = "pixels", provenance: bool = True):
        """Like `Detector.predict_iter`: records for (input, name) pairs, in order."""
        router = self.with_options(threshold, provenance)
        yield from router.predict_items(items, batch_size, workers, max_pixels, verdict)

    def explain(self, image, method: str = "gradcam", target: str = "verdict", name: str | None = None):
        """The explanation of one image by the detector its size picks (see realjudge.explain)."""
        from .io.decode import decode

        decoded = decode(image, name)
        h, w = decoded.pixels.shape[:2]
        return self.pick(w, h).explain(decoded, method=method, target=target, name=name or decoded.name)

    @property
    def policies(self) -> dict[str, object]:
        return {n: d.policy for n, d in self.detectors.items()}

    def predict_samples(self, samples, batch_size: int = 256, workers: int | None = None,
                        max_pixels: int = DEFAULT_MAX_PIXELS, verdict: str = "pixels") -> Iterator[Record]:
        """Records for data-source samples, in order.

        `workers=None` decides from the first batch, scored in this process: decoding moves to worker
        processes only when it costs more than a quarter of the model's time. On few cores, worker
        processes and the model's threads compete for the same cores, so overlapping a cheap stage
        loses more than it gains (measured: benchmarks/detect_speed.py).
        """
        _check_mode(verdict)
        items = ((s, s.locator) for s in samples)
        if workers is not None:
            yield from self.predict_items(items, batch_size, workers, max_pixels, verdict)
            return
        timing = {"decode": 0.0, "model": 0.0}
        first = list(itertools.islice(items, batch_size))
        yield from _apply(verdict, self._score(map(_timed(_route_job, timing), ((o, n, self, max_pixels) for o, n in first)),
                                               batch_size, timing))
        cores = os.cpu_count() or 1
        overlap = cores > 1 and timing["decode"] > OVERLAP_SHARE * timing["model"]
        yield from self.predict_items(items, batch_size, cores if overlap else 0, max_pixels, verdict)

    def predict_items(self, items, batch_size: int = 256, workers: int = 0,
                      max_pixels: int = DEFAULT_MAX_PIXELS, verdict: str = "pixels") -> Iterator[Record]:
        """Records for (input, name) pairs; an input is a Sample, a path, bytes, a PIL image or an array."""
        _check_mode(verdict)
        jobs = ((obj, name, self, max_pixels) for obj, name in items)
        pool = ProcessPoolExecutor(workers) if workers > 0 else None
        try:
            scored = self._score(pool.map(_route_job, jobs, chunksize=64) if pool else map(_route_job, jobs), batch_size)
            yield from _apply(verdict, scored)
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)

    def _score(self, prepared, batch_size: int, timing: dict | None = None) -> Iterator[Record]:
        pending: list[tuple[Prepared, str | None]] = []
        n_views = 0
        for item in prepared:
            pending.append(item)
            n_views += 0 if item[0].views is None else len(item[0].views)
            if n_views >= batch_size:
                yield from self._timed_flush(pending, timing)
                pending, n_views = [], 0
        if pending:
            yield from self._timed_flush(pending, timing)

    def _timed_flush(self, pending, timing: dict | None) -> list[Record]:
        t = time.perf_counter()
        out = self._flush(pending)
        if timing is not None:
            timing["model"] += time.perf_counter() - t
        return out

    def _flush(self, pending: list[tuple[Prepared, str | None]]) -> list[Record]:
        out: list[Record | None] = [None] * len(pending)
        groups: dict[str, list[int]] = {}
        for i, (p, name) in enumerate(pending):
            groups.setdefault(name or self.small, []).append(i)
        for name, rows in groups.items():
            det = self.detectors[name]
            for i, rec in zip(rows, det._records([pending[i][0] for i in rows], det.threshold)):
                out[i] = rec
        return out  # type: ignore[return-value]

    # Pickled into decode workers: only the policies travel, never the models.
    def __getstate__(self):
        return {"small": self.small, "large": self.large, "sizes": {n: d.policy for n, d in self.detectors.items()},
                "provenance": self.provenance}

    def __setstate__(self, state):
        self.small, self.large, self.provenance = state["small"], state["large"], state["provenance"]
        self.detectors = {n: _PolicyOnly(p) for n, p in state["sizes"].items()}


def _check_mode(verdict: str) -> None:
    if verdict not in VERDICT_MODES:
        raise UsageError(f"verdict must be one of {', '.join(VERDICT_MODES)}, got {verdict!r}")


def _apply(verdict: str, records: Iterator[Record]) -> Iterator[Record]:
    return map(combine, records) if verdict == "combined" else records


class _PolicyOnly:
    def __init__(self, policy):
        self.policy = policy


def _timed(fn, timing: dict):
    def run(args):
        t = time.perf_counter()
        try:
            return fn(args)
        finally:
            timing["decode"] += time.perf_counter() - t

    return run


def _route_job(args) -> tuple[Prepared, str | None]:
    """Read, decode, pick the detector by size and apply its policy. Never raises."""
    obj, name, router, max_pixels = args
    if isinstance(obj, DecodeError):  # failed upstream (reading an archive member, a perturbation)
        return Prepared(name, None, error=str(obj)), None
    try:
        # The file is read once: the same bytes feed the decoder and the provenance readers.
        data = obj.read_bytes() if hasattr(obj, "read_bytes") else (read_file(obj, name) if isinstance(obj, (str, os.PathLike)) else obj)
        d = decode(data, name, max_pixels)
    except DecodeError as err:
        return Prepared(name, None, error=str(err)), None
    # Pixels handed in as a PIL image or an array carry no file, so there is no provenance to read.
    has_file = isinstance(data, (bytes, bytearray, memoryview))
    provenance = [f.to_dict() for f in read_provenance(bytes(data), d.pixels)] if router.provenance and has_file else None
    h, w = d.pixels.shape[:2]
    model = router.small if max(w, h) <= SMALL_SIDE else router.large
    policy = router.detectors[model].policy
    warnings = size_warnings(model, policy, w, h)
    try:
        views, note = policy.views(d.pixels)
    except UsageError as err:
        return Prepared(name, None, error=f"{name}: {err}", provenance=provenance, warnings=warnings), model
    return Prepared(name, np.stack(views), note, d.facts, provenance=provenance, warnings=warnings), model


def size_warnings(model: str, policy, width: int, height: int) -> list[str]:
    """Why a verdict deserves less trust because of the image's size: a photograph resized for a small-image model."""
    if policy.kind == "resize" and max(width, height) > SMALL_SIDE:
        s = policy.size
        return [f"{model} judges {s}x{s} images: this {width}x{height} image was resized to {s}x{s}, which erases the "
                f"traces it looks for; its verdict on a larger image is not reliable (leave the model unset to route "
                f"images larger than {SMALL_SIDE} px to a natural-resolution detector)"]
    return []
