"""Text-to-image data sets in the CIFAKE layout: `OUT/<split>/FAKE/` plus rows in `OUT/manifest.csv`.

A run plans every image (seed, prompt, name), keeps the files already there, and generates the
rest in batches: several prompts per pipeline call, each image with its own `torch.Generator`
seeded from the plan. The generators live on the CPU, so the starting noise is the same on any
device. Generated images are downscaled with a named filter and encoded like CIFAKE (JPEG q75).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .layout import check_output, downscale, image_dir, is_blank, present, remove_partial_files, save_image
from .manifest import Manifest
from .pipeline import DEFAULT_MODEL, ResolvedModel, load_pipeline, pick_device, require_generate_extra, resolve_model
from .plan import Job, aligned_batches, plan_jobs
from .prompts import CIFAR10_CLASSES, DEFAULT_TEMPLATES, check_template


@dataclass
class FakeSettings:
    out: Path
    model: str = DEFAULT_MODEL
    classes: list[str] = field(default_factory=lambda: list(CIFAR10_CLASSES))
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    per_class: int = 100
    size: int = 32
    steps: int = 50
    guidance: float = 7.5
    seed: int = 0
    batch_size: int = 8
    fmt: str = "jpeg"
    jpeg_quality: int = 75
    filter: str = "lanczos"
    split: str = "train"
    device: str = "auto"
    dtype: str = "auto"

    def validate(self) -> None:
        check_output(self.fmt, self.jpeg_quality, self.filter)
        for name in ("per_class", "size", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.classes:
            raise UsageError("no classes to generate")
        for t in self.templates:
            check_template(t, "prompt template")


@dataclass
class Summary:
    folder: Path
    manifest: Path
    written: int = 0  # images made in this run
    kept: int = 0  # images already on disk, left as they were
    rows_added_for_kept: int = 0  # kept files whose rows a crash had lost
    failed: list[str] = field(default_factory=list)  # one line per image that could not be made


def _row(s: FakeSettings, job: Job, model: ResolvedModel, scheduler: str, dtype: str) -> dict[str, str]:
    return {
        "path": f"{s.split}/FAKE/{job.name}", "label": "fake", "split": s.split, "class": job.cls,
        "class_index": str(job.class_index), "prompt": job.prompt, "seed": str(job.seed), "model": model.given,
        "generator": model.generator, "revision": model.revision, "scheduler": scheduler, "steps": str(s.steps),
        "guidance": f"{s.guidance:g}", "size": str(s.size), "filter": s.filter,
        "jpeg_quality": str(s.jpeg_quality) if s.fmt == "jpeg" else "", "dtype": dtype, "origin": "",
    }


def _scheduler_name(model: ResolvedModel) -> str:
    entry = json.loads((model.folder / "model_index.json").read_text()).get("scheduler")
    return entry[1] if isinstance(entry, list) and len(entry) == 2 and entry[1] else ""


def _run_batch(pipe, batch: list[Job], s: FakeSettings) -> list:
    import torch

    generators = [torch.Generator("cpu").manual_seed(job.seed) for job in batch]
    with torch.inference_mode():
        result = pipe(prompt=[job.prompt for job in batch], num_inference_steps=s.steps, guidance_scale=s.guidance,
                      generator=generators, output_type="pil")
    return result.images


def generate_fakes(s: FakeSettings, progress: bool = False) -> Summary:
    """Make the missing images of the plan; keep the others. Safe to rerun after any interruption."""
    s.validate()
    require_generate_extra()
    out = Path(s.out)
    folder = image_dir(out, s.split, "FAKE")
    model = resolve_model(s.model)
    device, dtype = pick_device(s.device, s.dtype)
    scheduler = _scheduler_name(model)
    jobs = plan_jobs(s.classes, s.per_class, s.seed, s.split, s.templates, s.fmt)
    summary = Summary(folder, out / "manifest.csv")
    with Manifest(out) as manifest:
        rows = {job.name: _row(s, job, model, scheduler, dtype) for job in jobs}
        for row in rows.values():
            manifest.check(row)  # before any work: mixing settings in one folder is refused
        remove_partial_files(folder)
        todo = {job.name for job in jobs if not present(folder / job.name)}
        kept = [rows[job.name] for job in jobs if job.name not in todo]
        summary.kept = len(kept)
        summary.rows_added_for_kept = sum(r["path"] not in manifest.rows for r in kept)
        manifest.append(kept)
        if not todo:
            return summary
        pipe = load_pipeline(model, device, dtype)
        from tqdm import tqdm

        with tqdm(total=len(todo), unit="img", desc="generate", disable=not progress) as bar:
            for batch in aligned_batches(jobs, s.batch_size):
                if not any(job.name in todo for job in batch):
                    continue
                # The whole aligned batch runs even if only some files are missing (see aligned_batches).
                images = _run_batch(pipe, batch, s)
                written = []
                for job, image in zip(batch, images):
                    if job.name not in todo:
                        continue
                    small = downscale(image, s.size, s.filter)
                    if is_blank(small):
                        summary.failed.append(f"{folder / job.name}: the pipeline returned a blank image "
                                              f"(seed {job.seed}; a float16 overflow? try --dtype float32)")
                        continue
                    save_image(small, folder / job.name, s.fmt, s.jpeg_quality)
                    written.append(rows[job.name])
                manifest.append(written)
                summary.written += len(written)
                bar.update(sum(job.name in todo for job in batch))
    return summary
