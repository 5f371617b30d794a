"""Bundles: a trained detector on disk (a folder, or a .zip of one).

`model.safetensors` (weights only: loading never runs code), `bundle.json` (architecture, input
policy, calibration, training provenance, validation metrics, versions) and `MODEL_CARD.md`.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calibrate import Calibration
from .errors import UsageError
from .preprocess import InputPolicy

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


def library_versions() -> dict[str, str]:
    import numpy as np
    import PIL
    import safetensors
    import torch

    from ._version import __version__

    return {"realjudge": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "safetensors": safetensors.__version__}


def shipped_names() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "bundle.json").is_file())


def _model_card(meta: dict[str, Any]) -> str:
    m = meta.get("val_metrics", {})
    t = meta.get("training", {})
    pol = meta["input_policy"]
    fmt = lambda v: "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = "\n".join(f"| {k} | {fmt(m.get(k))} |" for k in
                     ("accuracy", "precision", "recall", "f1", "roc_auc", "ap", "real_accuracy", "fake_accuracy", "uncertain_share"))
    policy = (f"Resized to {pol['size']}x{pol['size']} with the {pol['filter']} filter" if pol["kind"] == "resize"
              else f"Native resolution: up to {pol['crops']} crops of {pol['size']} px ({'centre and corners' if pol['crops'] <= 5 else 'an even grid'}), logits averaged; small images padded ({pol['pad']})")
    if pol.get("shifts"):
        policy += (f"; every view is also scored shifted by {', '.join(f'({dx:+d}, {dy:+d})' for dx, dy in pol['shifts'])} px"
                   " (reflected edge), logits averaged")
    if pol.get("mirror"):
        policy += "; every view is also scored mirrored left-right, logits averaged"
    cal = meta["calibration"]
    notes = f"\n## Notes\n{meta['notes']}\n" if meta.get("notes") else ""
    return f"""# {meta['name']}

Architecture `{meta['arch']}` {json.dumps(meta['arch_kwargs'])}, trained by realjudge {meta.get('versions', {}).get('realjudge', '?')}.

## Training data
{chr(10).join(f"- `{s['path']}` (layout {s.get('layout', 'auto')}{', label ' + s['label'] if s.get('label') else ''})" for s in t.get('sources', []))}
- {t.get('n_train', '?')} training and {t.get('n_val', '?')} validation {'patches' if pol['kind'] == 'crop' else 'images'}; split by image: {t.get('val_split', '?')}.

## Intended input
{policy}. {meta.get('intended_input', '')}

## Calibration (validation split)
Temperature {cal['temperature']:.3f}{f"; logit offset {cal['offset']:+.3f} (the threshold reads 0.5)" if cal.get('offset') else ''}; threshold {cal['threshold']:.4f} on p_fake, chosen for
{cal.get('rule', 'balanced accuracy')}; uncertain band ({cal['uncertain_band'][0]:.4f}, {cal['uncertain_band'][1]:.4f}).{band_fit_line(cal.get('band_fit'))}

## Validation metrics (fake = positive, at the calibrated threshold)
| metric | value |
| --- | --- |
{rows}

Confusion matrix [[TN, FP], [FN, TP]]: {m.get('confusion_matrix')}

## Known failure modes
{meta.get('failure_modes', '- Images from generators, sizes or compression unlike the training data; scores there are not calibrated.')}
{notes}"""


def band_fit_line(fit: dict | None) -> str:
    """The card's sentence on how the uncertain band was fitted and what it leaves decided ('' when unrecorded)."""
    if not fit:
        return ""
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    if fit.get("rule") == "local error rate":
        how = (f"the scores whose local validation error rate (over the {fit.get('window')} images nearest in score) "
               f"exceeds {fit.get('band_error')}")
        if fit.get("threshold_interval"):
            lo, hi = fit["threshold_interval"]
            how += f", and at least ({lo:.4f}, {hi:.4f}), the {fit.get('min_width_from')}"
    else:
        how = f"the narrowest band outside which at most {fit.get('target_error')} of validation images are wrong"
    return (f"\nBand: {how}. On the {fit.get('n')} validation images {pct(fit.get('coverage'))} lie outside it and get a "
            f"verdict, {pct(fit.get('accuracy_outside'))} of those right; {pct(fit.get('error_inside'))} of the verdicts "
            f"inside it would be wrong.")


def write_bundle(out: str | Path, model, *, name: str, arch: str, arch_kwargs: dict, policy: InputPolicy,
                 calibration: Calibration, training: dict, config: dict, val_metrics: dict,
                 extra: dict | None = None) -> Path:
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
    (out / "MODEL_CARD.md").write_text(_model_card(meta))
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
