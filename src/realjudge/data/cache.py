"""Decoded uint8 cache for small-image sets, so an epoch over CIFAKE never decodes 100,000 JPEGs again.

A cache is a folder of `.npy` arrays (loaded with `allow_pickle=False`) plus `index.json`, keyed by
the sources' paths, sizes and mtimes and the pixel size. Images of another size are resized with the
bundle's named filter before they are stored; the policy name is part of the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DecodeError
from .samples import Sample, content_id, iter_sample_bytes


def cache_root() -> Path:
    return Path(os.environ.get("REALJUDGE_CACHE", Path.home() / ".cache" / "realjudge"))


@dataclass
class ArraySet:
    """Decoded images of one size with labels and content ids; row i belongs to `samples[i]`."""

    pixels: np.ndarray  # N x H x W x 3 uint8
    labels: np.ndarray  # N int64, -1 for unknown
    ids: list[str]
    samples: list[Sample]
    errors: list[str]

    def subset(self, rows: np.ndarray) -> "ArraySet":
        rows = np.asarray(rows)
        return ArraySet(
            self.pixels[rows], self.labels[rows], [self.ids[i] for i in rows], [self.samples[i] for i in rows], []
        )


def _source_key(samples: list[Sample], size: int, resize: str) -> str:
    h = hashlib.sha256(f"{size}:{resize}:{len(samples)}".encode())
    roots = sorted({s.locator.partition("::")[0] if "::" in s.locator else os.path.dirname(s.locator) for s in samples})
    for r in roots:
        st = os.stat(r)
        h.update(f"{os.path.abspath(r)}:{st.st_size}:{st.st_mtime_ns}".encode())
    for s in samples:
        h.update(s.locator.encode())
        h.update(str(s.label).encode())
    return h.hexdigest()[:24]


def _decode_one(args: tuple[bytes, str, int, str]) -> tuple[np.ndarray | None, str, str | None]:
    from ..preprocess import resize_to

    blob, name, size, resize = args
    try:
        from .decode import decode_bytes

        pixels = decode_bytes(blob, name).pixels
        if pixels.shape[:2] != (size, size):
            pixels = resize_to(pixels, size, resize)
        return pixels, content_id(blob), None
    except DecodeError as err:
        return None, "", str(err)


def load_arrays(samples: list[Sample], size: int, resize: str = "bicubic", workers: int | None = None,
                use_cache: bool = True, progress: bool = False) -> ArraySet:
    """Decode `samples` to `size` x `size` arrays, from the cache when it is there."""
    key = _source_key(samples, size, resize)
    folder = cache_root() / key
    if use_cache and (folder / "index.json").exists():
        index = json.loads((folder / "index.json").read_text())
        pixels = np.load(folder / "pixels.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(folder / "labels.npy", allow_pickle=False)
        rows = index["rows"]
        for r, cid in zip(rows, index["ids"]):
            samples[r].learn_id(cid)  # so that `Sample.id` never rereads the bytes
        return ArraySet(np.asarray(pixels), labels, index["ids"], [samples[i] for i in rows], index["errors"])

    workers = workers or max(1, min(4, os.cpu_count() or 1))
    order: list[Sample] = []
    jobs: list[tuple[bytes, str, int, str]] = []
    errors: list[str] = []
    for s, blob in iter_sample_bytes(samples):
        if isinstance(blob, DecodeError):
            errors.append(str(blob))
            continue
        order.append(s)
        jobs.append((blob, s.locator, size, resize))
    position = {id(s): i for i, s in enumerate(samples)}
    pixels = np.empty((len(jobs), size, size, 3), np.uint8)
    ids: list[str] = []
    rows: list[int] = []
    kept = 0
    bar = _bar(len(jobs), progress)
    with ProcessPoolExecutor(workers) as pool:
        for s, (px, cid, err) in zip(order, pool.map(_decode_one, jobs, chunksize=512)):
            bar.update(1)
            if err:
                errors.append(err)
                continue
            pixels[kept] = px
            kept += 1
            ids.append(cid)
            rows.append(position[id(s)])
    bar.close()
    pixels = pixels[:kept]
    labels = np.array([-1 if samples[r].label is None else samples[r].label for r in rows], np.int64)
    for s, cid in zip((samples[r] for r in rows), ids):
        s.learn_id(cid)
    if use_cache:
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        np.save(tmp / "pixels.npy", pixels, allow_pickle=False)
        np.save(tmp / "labels.npy", labels, allow_pickle=False)
        (tmp / "index.json").write_text(json.dumps({"ids": ids, "rows": rows, "errors": errors, "size": size,
                                                    "resize": resize}))
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        os.replace(tmp, folder)
    return ArraySet(pixels, labels, ids, [samples[r] for r in rows], errors)


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc="decode", unit="img", leave=False)
