"""What a generation run makes: one job per image, each with its own seed, prompt and file name.

Everything here is a pure function of (base seed, split, class list, per-class count, templates),
so a resumed or repeated run plans the same images, and a deleted file is made again from the same
seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .layout import cifake_name
from .prompts import compose_prompt


@dataclass(frozen=True)
class Job:
    class_index: int
    cls: str
    number: int  # index of the image within its class
    seed: int
    prompt: str
    name: str  # CIFAKE-style file name


def image_seed(base_seed: int, split: str, cls: str, number: int) -> int:
    """A 63-bit seed from (base seed, split, class name, index): stable across runs and class-list
    reorderings, unrelated for neighbours (a plain `base + index` would reuse noise across classes),
    and different per split, so that train and test never hold the same image."""
    digest = hashlib.sha256(f"realjudge-generate:{base_seed}:{split}:{cls}:{number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def plan_jobs(classes: list[str], per_class: int, base_seed: int, split: str, templates: list[str],
              fmt: str) -> list[Job]:
    jobs = []
    for k, cls in enumerate(classes):
        for i in range(per_class):
            seed = image_seed(base_seed, split, cls, i)
            jobs.append(Job(k, cls, i, seed, compose_prompt(templates, cls, seed), cifake_name(i, k, fmt)))
    return jobs


def aligned_batches(jobs: list[Job], batch_size: int) -> list[list[Job]]:
    """Batches of one class, cut at multiples of `batch_size` of the image index.

    A batch's members are fixed by the plan alone, so an image that is made again after a deletion
    sits in the same batch as the first time. That matters: GPU kernels may round differently for
    another batch size, and the bytes would then differ."""
    groups: dict[tuple[int, int], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.class_index, job.number // batch_size), []).append(job)
    return list(groups.values())
