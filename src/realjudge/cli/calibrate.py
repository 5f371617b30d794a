"""`realjudge calibrate BUNDLE`: refit a bundle's uncertain band on its validation split, without retraining.

The temperature and threshold are kept (so every verdict outside the band stays what it was) unless
the test-time views or the model step's precision change (`--views`, `--precision`): those give other
logits, so the whole calibration is fitted again. The band is refitted by the local-error-rate rule
of `realjudge.calibrate.fit_error_band`, and its coverage and accuracy outside it are recorded in the
bundle's calibration and model card.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import click

from ..precision import CHOICES as PRECISION_CHOICES
from ..preprocess import ONE_PX_SHIFTS
from .options import card_option, read_card

# The test-time views `--views` can choose (benchmarks/tta_sweep.py compares them on a bundle's validation split).
VIEW_CHOICES = {"none": {}, "mirror": {"mirror": True}, "mirror-shift4": {"mirror": True, "shifts": ONE_PX_SHIFTS}}


@click.command("calibrate")
@click.argument("bundle")
@click.option("--data", "data", multiple=True,
              help="The bundle's training source(s) (default: the paths its training config names). Repeatable.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write the refitted bundle here (default: only report the figures). May be the bundle's own folder.")
@click.option("--band-error", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True,
              help="The band holds the scores whose local validation error rate exceeds this.")
@click.option("--scores", "scores_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the validation logits and labels here (.npz), to study the band without rescoring.")
@click.option("--from-scores", "scores_in", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Refit from logits and labels written earlier by --scores for this bundle (nothing is rescored).")
@click.option("--views", type=click.Choice(["bundle", *VIEW_CHOICES]), default="bundle", show_default=True,
              help="Test-time views: the bundle's own (only the band is refitted), or a new choice: none (one view "
                   "per image), mirror, or mirror-shift4 (the mirror and 1-px shifts in four directions: ten views); "
                   "a new choice refits the temperature, the threshold and the band, and rewrites the validation "
                   "metrics.")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="bundle", show_default=True,
              help="The torch model step's number format to calibrate for (realjudge.precision); another than the "
                   "bundle's refits the whole calibration and is recorded in the bundle.")
@click.option("--name", default=None, help="Detector name recorded in the refitted bundle (default: the bundle's own).")
@card_option()
@click.option("--device", default="auto", show_default=True)
@click.option("--progress/--no-progress", default=None)
def command(bundle, data, out_dir, band_error, scores_out, scores_in, views, precision, name, card_file, device,
            progress):
    """Refit the uncertain band on the bundle's validation split (the same split its training used);
    with another --views or --precision, the whole calibration."""
    import numpy as np
    from tqdm import tqdm

    from ..data.layouts import open_source
    from ..data.samples import assign_groups, is_validation, iter_sample_bytes, split_key
    from ..detector import load
    from ..errors import UsageError

    if (name or card_file) and not out_dir:
        raise UsageError("--name and --card describe the refitted bundle: give --out")
    card_text = read_card(card_file) or {}
    det = load(bundle, device, precision=precision)
    if det.runtime_note:  # a bfloat16 bundle on hardware without it: the refit is for float32
        click.echo(f"realjudge: note: {det.name}: {det.runtime_note}", err=True)
    refit = views != "bundle" or det.precision != det.info.precision
    if views != "bundle":
        from dataclasses import replace

        from ..detector import Detector

        det = Detector(det.model, replace(det.info, policy=det.policy.with_views(**VIEW_CHOICES[views])), det.device,
                       precision=det.precision)
    if scores_in:
        stored = np.load(scores_in, allow_pickle=False)
        return _finish(bundle, det, stored["labels"], stored["logits"], band_error, out_dir, [], refit,
                       name, card_text)
    meta = det.info.meta
    config = meta.get("training_config") or {}
    fraction = config.get("val_fraction")
    if not fraction:
        raise UsageError(f"{bundle}: the bundle records no validation fraction; it cannot be recalibrated here")
    specs = config.get("sources") or []
    paths = list(data) or [s["path"] for s in specs]
    if not paths:
        raise UsageError(f"{bundle}: no --data given and the training config names no source")
    samples = []
    for path in paths:
        # The training source of the same file name gives the layout, label and grouping used in training.
        spec = next((s for s in specs if Path(s["path"]).name == Path(path).name), {})
        label = spec.get("label")
        found = open_source(path, spec.get("layout", "auto"), label=None if label is None else int(label == "fake"))
        if spec.get("group"):
            assign_groups(found, spec["group"])
        samples += found
    show = sys.stderr.isatty() if progress is None else progress

    def validation():
        bar = tqdm(total=len(samples), disable=not show, unit="img", file=sys.stderr, desc="validation split")
        for s, blob in iter_sample_bytes(samples):
            bar.update(1)
            if isinstance(blob, bytes) and s.label is not None:
                s.learn_id(blob)
                if is_validation(split_key(s), fraction):
                    yield s, blob
        bar.close()

    labels, logits, errors, kept = [], [], [], []
    chosen = []

    def feed():
        for s, blob in validation():
            chosen.append(s)
            yield blob, s.locator

    for i, rec in enumerate(det.predict_iter(feed(), provenance=False)):
        if rec.error:
            errors.append(rec.error)
            continue
        labels.append(chosen[i].label)
        logits.append(rec.logit)
        kept.append(chosen[i].locator)
    for e in errors[:20]:
        click.echo(f"realjudge: error: {e}", err=True)
    if len(set(labels)) < 2:
        raise UsageError(f"{bundle}: the validation split of {', '.join(paths)} needs real and fake images; "
                         f"found {len(labels)} image(s)")
    y, z = np.array(labels), np.array(logits, np.float64)
    if scores_out:
        np.savez(scores_out, logits=z, labels=y, locators=np.array(kept))
    _finish(bundle, det, y, z, band_error, out_dir, errors, refit, name, card_text)


def _finish(bundle, det, y, z, band_error, out_dir, errors, new_views: bool = False, name: str | None = None,
            card_text: dict | None = None) -> None:
    """Refit the band on validation logits `z` and labels `y` (with `new_views`, the whole calibration
    and the validation metrics), report it, and write the bundle to `out_dir`, named `name` and with
    `card_text`'s fields in place of the bundle's own (notes given there replace the automatic note)."""
    from ..bundle import _read_bundle_files, resolve_bundle_path
    from ..calibrate import band_figures, refit_band
    from ..card import band_fit_line, model_card
    from ..train.scoring import calibrated_metrics, metrics_at

    old = det.calibration
    metrics = None
    if new_views:  # other views give other logits: temperature and threshold are chosen again, then the band
        config = det.info.meta.get("training_config") or {}
        fitted, _ = calibrated_metrics(z, y, config.get("min_real_accuracy"), config.get("threshold_rule", "balanced"))
        new = refit_band(fitted, z, y, band_error)
        metrics = metrics_at(new, z, y)
    else:
        new = refit_band(old, z, y, band_error)
    before = band_figures(old.probability(z), y, old.threshold, old.uncertain_band)
    report = {"bundle": str(bundle), "n_val": len(y), "threshold": new.threshold, "old_threshold": old.threshold,
              "old_band": list(old.uncertain_band), "old": before, "new_band": list(new.uncertain_band),
              "band_fit": new.band_fit, "unreadable": len(errors)}
    if metrics is not None:
        report |= {"input_policy": det.policy.to_json(), "precision": det.precision, "val_metrics": metrics}
    click.echo(json.dumps(report, indent=2))
    if out_dir:
        src = resolve_bundle_path(bundle)
        meta_old, _weights, card = _read_bundle_files(src)
        out = Path(out_dir)
        if src.is_dir() and src.resolve() != out.resolve():
            shutil.copytree(src, out, dirs_exist_ok=True)
        elif not src.is_dir():
            import zipfile

            with zipfile.ZipFile(src) as zf:
                zf.extractall(out)
        meta_new = dict(meta_old) | {"calibration": new.to_json(), "uncertain_band": list(new.uncertain_band)}
        if metrics is not None:
            views = det.policy.views_description()
            note = (f"Recalibrated for {views} with the model step in {det.precision} by `realjudge calibrate` "
                    "(temperature, threshold and band refitted on the validation split); text above about other "
                    "views or precisions is superseded.")
            meta_new |= {"input_policy": det.policy.to_json(), "precision": det.precision, "threshold": new.threshold,
                         "val_metrics": metrics, "notes": (meta_old.get("notes", "") + " " + note).strip()}
        elif "uncertain_share" in meta_new.get("val_metrics", {}):
            meta_new["val_metrics"] = meta_new["val_metrics"] | {"uncertain_share": 1.0 - new.band_fit["coverage"]}
        meta_new |= ({"name": name} if name else {}) | (card_text or {})
        if card == model_card(meta_old) or metrics is not None or name or card_text:
            card = model_card(meta_new)
        else:  # a hand-edited card: change the band's figures only
            card = re.sub(r"uncertain band \([0-9.]+, [0-9.]+\)\.(\nBand: [^\n]*)?",
                          lambda _m: f"uncertain band ({new.uncertain_band[0]:.4f}, {new.uncertain_band[1]:.4f})."
                                     + band_fit_line(new.band_fit), card, count=1)
        (out / "bundle.json").write_text(json.dumps(meta_new, indent=2, default=float))
        (out / "MODEL_CARD.md").write_text(card)
        click.echo(f"refitted bundle: {out}", err=True)
