"""Bundles: a trained detector on disk (a folder, or a .zip of one).

`model.safetensors` (weights only: loading never runs code), `bundle.json` (architecture, input
policy, calibration, training provenance, validation metrics, versions) and `MODEL_CARD.md`.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calibrate import Calibration
from .card import model_card
from .errors import UsageError
from .precision import PRECISIONS, RECORDED_DEFAULT
from .preprocess import InputPolicy
from .runtime import library_versions

FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "shipped"


@dataclass
class BundleInfo:
    name: str
    arch: str
    arch_kwargs: dict[str, Any]
    policy: InputPolicy
    calibration: Calibration
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    card: str = ""

    @property
    def precision(self) -> str:
        """The model step's number format the calibration was fitted at (realjudge.precision)."""
        return self.meta.get("precision", RECORDED_DEFAULT)


def shipped_names() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "bundle.json").is_file())


def write_bundle(out: str | Path, model, *, name: str, arch: str, arch_kwargs: dict, policy: InputPolicy,
                 calibration: Calibration, training: dict, config: dict, val_metrics: dict,
                 extra: dict | None = None, card_appendix: str = "") -> Path:
    """Write a bundle folder. `extra` adds fields to bundle.json (model-card text, score fusion...);
    `card_appendix` is Markdown appended to the generated MODEL_CARD.md (measured figures a report adds)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    meta = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "input_policy": policy.to_json(),
        "calibration": calibration.to_json(),
        "threshold": calibration.threshold,
        "uncertain_band": list(calibration.uncertain_band),
        "training": training,
        "training_config": config,
        "val_metrics": val_metrics,
        "versions": library_versions(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    } | (extra or {})
    (out / "bundle.json").write_text(json.dumps(meta, indent=2, default=float))
    (out / "MODEL_CARD.md").write_text(model_card(meta) + card_appendix)
    return out


def _read_bundle_files(path: Path) -> tuple[dict, bytes, str]:
    """bundle.json, weights bytes and the card, from a folder or a zip."""
    if path.is_dir():
        meta_file, weights_file = path / "bundle.json", path / "model.safetensors"
        if not meta_file.is_file() or not weights_file.is_file():
            raise UsageError(f"{path}: not a bundle (needs bundle.json and model.safetensors)")
        card = path / "MODEL_CARD.md"
        return _parse_meta(path, meta_file.read_bytes()), weights_file.read_bytes(), card.read_text() if card.is_file() else ""
    try:
        with zipfile.ZipFile(path) as z:
            names = {Path(n).name: n for n in z.namelist()}
            if "bundle.json" not in names or "model.safetensors" not in names:
                raise UsageError(f"{path}: not a bundle (the zip needs bundle.json and model.safetensors)")
            card = z.read(names["MODEL_CARD.md"]).decode() if "MODEL_CARD.md" in names else ""
            return _parse_meta(path, z.read(names["bundle.json"])), z.read(names["model.safetensors"]), card
    except zipfile.BadZipFile:
        raise UsageError(f"{path}: not a bundle folder or a bundle zip") from None


def _parse_meta(path: Path, raw: bytes) -> dict:
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: corrupt bundle (bundle.json is not valid JSON: {err})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{path}: corrupt bundle (bundle.json is not an object)")
    for key in ("format_version", "name", "arch", "input_policy", "calibration"):
        if key not in meta:
            raise UsageError(f"{path}: corrupt bundle (bundle.json lacks {key!r})")
    if meta["format_version"] > FORMAT_VERSION:
        raise UsageError(f"{path}: bundle format {meta['format_version']} is newer than this realjudge reads ({FORMAT_VERSION}); upgrade realjudge")
    return meta


def resolve_bundle_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    if str(name_or_path) in shipped_names():
        return SHIPPED_DIR / str(name_or_path)
    known = ", ".join(shipped_names()) or "none"
    raise UsageError(f"unknown model {str(name_or_path)!r}: not a bundle path nor a shipped model (shipped: {known})")


def load_bundle(name_or_path: str | Path, device: str = "cpu"):
    """Return (model in eval mode, BundleInfo). Errors are one-line `UsageError`s."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from .models.registry import architecture_only, create_model

    path = resolve_bundle_path(name_or_path)
    meta, weights, card = _read_bundle_files(path)
    try:
        policy = InputPolicy.from_json(meta["input_policy"])
        calibration = Calibration.from_json(meta["calibration"])
    except (TypeError, ValueError, KeyError) as err:
        raise UsageError(f"{path}: corrupt bundle (bad input policy or calibration: {err})") from None
    if meta.get("precision", RECORDED_DEFAULT) not in PRECISIONS:
        raise UsageError(f"{path}: corrupt bundle (precision {meta['precision']!r} is not one of {', '.join(PRECISIONS)})")
    model = create_model(meta["arch"], **architecture_only(meta["arch"], meta.get("arch_kwargs", {})))
    try:
        state = load(weights)
    except (SafetensorError, Exception) as err:  # safetensors raises its own error types for bad headers
        raise UsageError(f"{path}: corrupt bundle (model.safetensors unreadable: {str(err).splitlines()[0]})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise UsageError(f"{path}: corrupt bundle (weights do not match {meta['arch']}: {first})") from None
    model.eval().to(device)
    info = BundleInfo(meta["name"], meta["arch"], meta.get("arch_kwargs", {}), policy, calibration, meta, str(path), card)
    return model, info


def zip_bundle(folder: str | Path, out: str | Path) -> Path:
    folder, out = Path(folder), Path(out)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            if f.is_file():
                z.write(f, f.name)
    out.write_bytes(buf.getvalue())
    return out
