"""MODEL_CARD.md: what a bundle was trained on, its intended input, calibration, metrics and failure modes,
written from its bundle.json."""

from __future__ import annotations

import json
from typing import Any

from .errors import UsageError

CARD_FIELDS = ("intended_input", "failure_modes", "notes")  # the card's hand-written text, kept in bundle.json


def check_card(card: dict[str, Any], where: str = "model card") -> dict[str, str]:
    """`card` if it holds only CARD_FIELDS, each a string; else a UsageError naming `where`."""
    unknown = sorted(set(card) - set(CARD_FIELDS))
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(CARD_FIELDS)}")
    if not all(isinstance(v, str) for v in card.values()):
        raise UsageError(f"{where}: a card must be a JSON object of strings")
    return card


def model_card(meta: dict[str, Any]) -> str:
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
    # Only a bfloat16 bundle says so: float32 is the unrecorded default, and older cards stay as written.
    fitted_at = (" Fitted on the logits of the model step in bfloat16, which it runs in where the hardware has native "
                 "bfloat16 (float32 elsewhere, with a note)." if meta.get("precision") == "bfloat16" else "")
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
{cal.get('rule', 'balanced accuracy')}; uncertain band ({cal['uncertain_band'][0]:.4f}, {cal['uncertain_band'][1]:.4f}).{band_fit_line(cal.get('band_fit'))}{fitted_at}

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
