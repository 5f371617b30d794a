"""Finding and loading a diffusers text-to-image pipeline without ever touching the network.

A model is a local pipeline folder (with `model_index.json`) or a hub id already in the local
Hugging Face cache. Nothing is downloaded: every load passes `local_files_only=True`, so a machine
without internet fails at once with a message saying what to copy where, instead of hanging.
"""

from __future__ import annotations

import importlib.util
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..runtime import resolve_device

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"
INSTALL_HINT = "pip install -e '.[generate]' in a realjudge clone"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ResolvedModel:
    given: str  # what the user passed, recorded in the manifest
    folder: Path  # the local pipeline folder actually loaded
    generator: str  # short name for per-generator reports: the hub id, or the folder's name
    revision: str  # the cached snapshot's commit, empty for a plain folder


def require_generate_extra() -> None:
    """The generation libraries are an optional extra; say how to install them instead of failing on import."""
    for module in ("diffusers", "transformers"):  # accelerate, also in the extra, only speeds up loading
        try:
            found = importlib.util.find_spec(module) is not None
        except ValueError:  # a module set to None in sys.modules (how tests hide a package)
            found = False
        if not found:
            raise UsageError(f"text-to-image generation needs {module}, which is not installed: {INSTALL_HINT}")


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)  # read at call time: HF_HOME / HF_HUB_CACHE decide it


def _offline_hint(model: str, cache: str) -> str:
    return (f"on a machine with internet run `hf download {model} --local-dir DIR` (or `huggingface-cli download`), "
            f"copy DIR here and pass --model DIR, or copy its cache folder models--{model.replace('/', '--')} into {cache}; "
            "realjudge never downloads models")


def resolve_model(model: str) -> ResolvedModel:
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise UsageError(f"--model {model}: the folder has no model_index.json, so it is not a diffusers pipeline "
                             "folder (save one with pipeline.save_pretrained, or download a diffusers repository)")
        return ResolvedModel(model, path, path.resolve().name, "")
    if path.exists():
        raise UsageError(f"--model {model}: a file, not a pipeline folder; single-file checkpoints are not supported, "
                         "give a diffusers folder with model_index.json")
    if not _HUB_ID.match(model) or model.startswith((".", "~")) or "//" in model:
        raise UsageError(f"--model {model}: no such folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir()
    try:
        snapshot = Path(snapshot_download(model, local_files_only=True, cache_dir=cache))
    except LocalEntryNotFoundError:
        raise UsageError(f"--model {model}: not a local folder and not in the Hugging Face cache ({cache}); "
                         + _offline_hint(model, cache)) from None
    if not (snapshot / "model_index.json").is_file():
        raise UsageError(f"--model {model}: the cached copy in {snapshot} has no model_index.json (incomplete download?); "
                         + _offline_hint(model, cache))
    return ResolvedModel(model, snapshot, model, snapshot.name)


DTYPES = ("auto", "float16", "bfloat16", "float32")


def pick_device(requested: str, dtype: str = "auto") -> tuple[str, str]:
    """(device, dtype name). By default float16 on CUDA, which halves memory and time; CPU and MPS
    stay float32. float32 on CUDA is the remedy when float16 overflows (blank images)."""

    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")

    device = str(resolve_device(requested, allow_mps=True))
    if device.startswith("cuda"):
        return device, "float16" if dtype == "auto" else dtype
    if device == "cpu" and dtype == "float16":
        raise UsageError("--dtype float16 needs a GPU; on the CPU use float32 or bfloat16")
    return device, "float32" if dtype == "auto" else dtype


def _quiet_libraries() -> None:
    """diffusers and transformers log loading bars and advice on every load; the CLI has its own bar."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(resolved: ResolvedModel, device: str, dtype: str):
    """A text-to-image pipeline on `device`, safety checker off.

    The safety checker is disabled on purpose: it replaces images it flags with black squares, which
    would go silently into a data set as 'fake' images; data-set prompts name harmless classes, and
    blank images are refused anyway (see `layout.is_blank`)."""
    require_generate_extra()
    import torch

    _quiet_libraries()
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    index = json.loads((resolved.folder / "model_index.json").read_text())
    kwargs = {"local_files_only": True, "torch_dtype": getattr(torch, dtype)}
    if "safety_checker" in index:
        kwargs |= {"safety_checker": None, "requires_safety_checker": False}
    try:
        with warnings.catch_warnings():
            # Newer diffusers renamed torch_dtype to dtype; the old name works in every supported version.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            try:
                pipe = AutoPipelineForText2Image.from_pretrained(resolved.folder, **kwargs)
            except ValueError as err:
                if "AutoPipeline can't find" not in str(err):
                    raise
                pipe = DiffusionPipeline.from_pretrained(resolved.folder, **kwargs)  # a class AutoPipeline does not map
    except (OSError, ValueError, ImportError, RuntimeError) as err:  # a broken or partial model folder
        reason = " ".join(str(err).split())[:300]
        raise UsageError(f"--model {resolved.given}: could not load the pipeline from {resolved.folder}: {reason}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
