"""Generalisation of the `natural` detector to generator families it never saw, and docs/NTF.md.

    python benchmarks/natural_report.py run synth lofo final crops
    python benchmarks/natural_report.py write

`run STEP...` measures and stores JSON under runs/natural_report/ (resumable: a trained fold keeps
its bundle and is scored again, not retrained); `write` renders docs/NTF.md from whatever was
measured. Every figure in docs/NTF.md comes from these files.

Steps:
- synth: the synthesized pairs in runs/synth, exactly as
  `realjudge data synthesize ../shared/data/natural-train.zip ../shared/data/natural-extra.zip
  --out runs/synth --per-real 2 --crop 256` writes them (every real photograph of both zips through
  two of the shipped decoders); then how well the trivial sharpness score separates the pairs.
- lofo: leave-one-generator-family-out over the public fakes of both zips, each prompt's renderings
  on one side, the synthesized pairs on their photograph's side and in training only; plus "train
  on synthesized fakes only, test on every public family". Candidate recipes (`VARIANTS`): the
  configs/natural.json recipe (NTF on 11 ImageNet EfficientNet-Lite0 blocks), the same without
  synthesized fakes, and NTF on the neighbouring-pixel residual from scratch (NPR encoder). Each fold scores its held-out family and the test-side reals clean, after JPEG 75 and
  after a 0.5x downscale, beside the sharpness score on the same images.
- final: the bundle `realjudge train --config configs/natural.json --run-dir runs/natural --out
  runs/natural/bundle` trains (run it first), on its validation split: real accuracy per real set,
  clean and after JPEG 75, 0.5x downscale and 1.5x upscale; fake accuracy per family.
- crops: that bundle's validation AP and accuracies against the number of crops (no retraining).
- ship: copy runs/natural/bundle to src/realjudge/shipped/natural.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import ROOT, SHARED_DATA, load_json, save_json

DATA = SHARED_DATA
ZIPS = [DATA / "natural-train.zip", DATA / "natural-extra.zip"]
SYNTH = ROOT / "runs" / "synth"
OUT = ROOT / "runs" / "natural_report"
CONFIG = ROOT / "configs" / "natural.json"
BUNDLE = ROOT / "runs" / "natural" / "bundle"
SHIPPED = ROOT / "src" / "realjudge" / "shipped" / "natural"
TEST_FRACTION = 0.3
PERTURBATIONS = ["jpeg:75", "downscale:0.5"]
REAL_PROCESSING = ["jpeg:75", "downscale:0.5", "upscale:1.5"]
CROPS = [1, 4, 9, 16, 25, 36, 64]

# Generator -> family: one family per model lineage (all Stable Diffusion 1.x/2.x versions and
# encodings are one family; PixArt-alpha and CogView2 have 3 and 4 images, too few alone).
FAMILIES = {"sd14": "stable-diffusion-1/2", "sd15": "stable-diffusion-1/2", "sd21": "stable-diffusion-1/2",
            "sd15_png": "stable-diffusion-1/2", "sd2_png": "stable-diffusion-1/2", "sd1x": "stable-diffusion-1/2",
            "dalle3": "dall-e-3", "kolors": "kolors", "kandinsky3": "kandinsky-3", "deepfloyd_if": "deepfloyd-if",
            "pixart_alpha": "pixart-alpha+cogview2", "cogview2": "pixart-alpha+cogview2"}
CAMERA_SETS = ("real_camera_exif", "real_exif_samples")

VARIANTS = {
    "ntf-effnet-b11": {},
    "ntf-effnet-b11-no-synth": {"_no_synth": True},
    "ntf-npr-no-synth": {"_no_synth": True, "lr": 0.002,
                         "arch_kwargs": {"encoder": "npr", "widths": [32, 64, 128], "dim": 32, "n_prototypes": 8, "loss": "soft"}},
}


def family_of(s) -> str:
    return FAMILIES.get(s.generator, s.generator or "unknown")


def is_synth(s) -> bool:
    return s.locator.startswith(str(SYNTH))


def _save(name: str, data) -> None:
    save_json(OUT, name, data)


def _load(name: str):
    return load_json(OUT, name)


def _config(overrides: dict | None = None):
    from realjudge.train.config import TrainConfig

    data = json.loads(CONFIG.read_text())
    data = data | {k: v for k, v in (overrides or {}).items() if not k.startswith("_")}
    return TrainConfig.from_json(data)


def all_samples(with_synth: bool = True):
    """Both zips (prompts grouped as configs/natural.json groups them) and, if built, the synthesized pairs."""
    from realjudge.data.samples import assign_groups
    from realjudge.data.layouts import open_source

    cfg = json.loads(CONFIG.read_text())
    out = []
    for spec in cfg["sources"]:
        path = ROOT / spec["path"]
        if path == SYNTH and (not with_synth or not (SYNTH / "manifest.csv").exists()):
            continue
        samples = open_source(str(path.resolve()) if path != SYNTH else str(SYNTH))
        if spec.get("group"):
            assign_groups(samples, spec["group"])
        out += samples
    return out


def _scores(det, samples, perturbation=None) -> list[dict]:
    from realjudge.evaluate.run import score_samples

    probs, kept, _ = score_samples(det, samples, perturbation)
    return [{"g": s.generator, "y": int(s.label), "p": float(p)} for s, p in zip(kept, probs)]


def _sharp(samples, perturbation=None) -> list[dict]:
    from realjudge.sharpness import sharpness_fake_scores

    scores, labels = sharpness_fake_scores(samples, perturbation)
    return [{"y": int(y), "p": float(p)} for y, p in zip(labels, scores)]


def _pert(spec: str):
    from realjudge.perturb import parse_perturbation

    return parse_perturbation(spec)[0]


# ---------------------------------------------------------------------------------------- steps
def step_synth() -> None:
    from realjudge.data.layouts import open_source
    from realjudge.synthesize.pairs import synthesize
    from realjudge.synthesize.reconstruct import reconstructors

    if not (SYNTH / "manifest.csv").exists():
        reals = [s for z in ZIPS for s in open_source(str(z))]
        t0 = time.time()
        done = synthesize(reals, SYNTH, reconstructors(), per_real=2, crop=256)
        done["seconds"] = time.time() - t0
    else:
        done = (_load("synth") or {}).get("done", {})
    synth = open_source(str(SYNTH))
    untouched = [s for s in synth if s.label == 0 and "sharpness matched" not in s.meta.get("preprocess", "")]
    fakes = [s for s in synth if s.label == 1]
    res = {"done": done, "n_real_copies": sum(s.label == 0 for s in synth), "n_untouched": len(untouched),
           "n_fakes": len(fakes), "per_decoder": {}}
    res["sharpness_pairs_untouched"] = _sharp(untouched + fakes)
    res["sharpness_pairs_all"] = _sharp([s for s in synth])
    for g in sorted({s.generator for s in fakes}):
        res["per_decoder"][g] = sum(s.generator == g for s in fakes)
    _save("synth", res)


def _protocols():
    from realjudge.evaluate.protocols import leave_one_family_out

    return leave_one_family_out(all_samples(), family_of, is_synth, TEST_FRACTION, only_train_only=True)


def _fold(det, p) -> dict:
    test = p.test
    out = {"name": p.name, "held_out": p.meta["held_out"], "n_train": len(p.train), "threshold": det.threshold,
           "clean": _scores(det, test), "sharpness": _sharp(test)}
    for spec in PERTURBATIONS:
        out[spec] = _scores(det, test, _pert(spec))
        out[f"sharpness {spec}"] = _sharp(test, _pert(spec))
    reals = [s for s in test if s.label == 0]
    for spec in REAL_PROCESSING:
        if spec not in PERTURBATIONS:
            out[spec] = _scores(det, reals, _pert(spec))
    return out


def step_lofo(variants=None) -> None:
    from realjudge.detector import load
    from realjudge.evaluate.experiments import train_detector

    protos = _protocols()
    store = _load("lofo") or {}
    for name in variants or VARIANTS:
        over = VARIANTS[name]
        cfg = _config(over)
        entry = store.setdefault(name, {"config": cfg.to_json(), "folds": {}, "seconds": 0.0})
        # Fold folders keep the protocol's index; the order only decides what a time-boxed run measures
        # first: synthesized fakes alone, then the families from the largest.
        order = sorted(enumerate(protos), key=lambda ip: (ip[1].kind != "synthesized-only",
                                                           -sum(s.label == 1 for s in ip[1].test)))
        for i, p in order:
            if p.name in entry["folds"]:
                continue
            if over.get("_no_synth") and p.kind == "synthesized-only":
                continue
            train = [s for s in p.train if not (over.get("_no_synth") and is_synth(s))]
            run = OUT / "lofo" / name / f"fold{i}"
            t0 = time.time()
            if (run / "bundle" / "bundle.json").exists():
                det = load(str(run / "bundle"), "cpu")
            else:
                det, _ = train_detector(replace(cfg), train, run, f"{name}-{i}")
            entry["folds"][p.name] = _fold(det, p) | {"n_train": len(train)}
            entry["seconds"] += time.time() - t0
            _save("lofo", store)
            print(f"{name}: {p.name} done ({time.time() - t0:.0f} s)", flush=True)


def _validation(det):
    from realjudge.data.samples import is_validation, split_key
    from realjudge.evaluate.protocols import with_ids

    frac = det.info.meta["training_config"]["val_fraction"]
    return [s for s in with_ids(all_samples(with_synth=False)) if is_validation(split_key(s), frac)]


def step_final() -> None:
    from realjudge.detector import load

    det = load(str(BUNDLE), "cpu")
    val = _validation(det)
    res = {"bundle": str(BUNDLE.relative_to(ROOT)), "threshold": det.threshold, "calibration": det.info.meta["calibration"],
           "val_metrics": det.info.meta["val_metrics"], "clean": _scores(det, val), "sharpness": _sharp(val)}
    for spec in REAL_PROCESSING:
        res[spec] = _scores(det, val, _pert(spec))
    _save("final", res)


def step_crops() -> None:
    from realjudge.detector import load

    det = load(str(BUNDLE), "cpu")
    val = _validation(det)
    base = det.policy
    res = {}
    for n in CROPS:
        det.policy = replace(base, crops=n)
        t0 = time.time()
        res[str(n)] = {"scores": _scores(det, val), "seconds": time.time() - t0}
    det.policy = base
    _save("crops", res)


# The bundle.json fields `write_bundle` writes from its arguments; every other field of the trained
# bundle (its score fusion, the versions it was trained with, when it was made) is carried over as is.
WRITTEN_BY_WRITE_BUNDLE = ("format_version", "name", "arch", "arch_kwargs", "input_policy", "calibration", "threshold",
                           "uncertain_band", "training", "training_config", "val_metrics")


def ship_card_appendix(lofo: dict, final: dict) -> str:
    """What the shipped card adds to the generated one: the measured generalisation figures."""
    recipe = next(iter(lofo))
    return ("\n## Generator families it never saw (leave one family out, same recipe)\n\n" +
            "\n".join(_lofo_tables({recipe: lofo[recipe]})[2:]) + "\n## Real photographs (its validation split)\n\n" +
            "\n".join(_real_sets_table(final)) + "\n\nHow these were measured: docs/NTF.md (benchmarks/natural_report.py).\n")


def ship(bundle: Path, out: Path, lofo: dict, final: dict, card: dict) -> Path:
    """Write `bundle` again as `out` (replaced if it exists): bundle.json gains the config's card fields,
    MODEL_CARD.md the generalisation tables."""
    from realjudge.bundle import load_bundle, write_bundle

    model, info = load_bundle(bundle, "cpu")
    meta = info.meta
    extra = {k: v for k, v in meta.items() if k not in WRITTEN_BY_WRITE_BUNDLE} | card
    appendix = ship_card_appendix(lofo, final)
    if out.exists():
        shutil.rmtree(out)
    return write_bundle(out, model, name=info.name, arch=info.arch, arch_kwargs=info.arch_kwargs, policy=info.policy,
                        calibration=info.calibration, training=meta["training"], config=meta["training_config"],
                        val_metrics=meta["val_metrics"], extra=extra, card_appendix=appendix)


def step_ship() -> None:
    """Copy the bundle into the package; its card gains the measured generalisation figures."""
    lofo, final = _load("lofo"), _load("final")
    if not lofo or not final:
        raise SystemExit("ship: run the lofo and final steps first (the card reports their figures)")
    ship(BUNDLE, SHIPPED, lofo, final, json.loads(CONFIG.read_text())["card"])
    print(f"shipped {SHIPPED} ({sum(f.stat().st_size for f in SHIPPED.iterdir()) / 1e6:.1f} MB)")


STEPS = {"synth": step_synth, "lofo": step_lofo, "final": step_final, "crops": step_crops, "ship": step_ship}


# ---------------------------------------------------------------------------------------- metrics
def _ap(rows) -> float | None:
    from sklearn.metrics import average_precision_score

    y = [r["y"] for r in rows]
    if len(set(y)) < 2:
        return None
    return float(average_precision_score(y, [r["p"] for r in rows]))


def _acc(rows, label: int, thr: float) -> float | None:
    rows = [r for r in rows if r["y"] == label]
    if not rows:
        return None
    return float(np.mean([(r["p"] >= thr) == bool(label) for r in rows]))


def _f(v, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _d(v, ref) -> str:
    return "n/a" if v is None or ref is None else f"{v:.3f} ({v - ref:+.3f})"


def fold_row(fold: dict) -> dict:
    thr = fold["threshold"]
    clean = fold["clean"]
    out = {"n_fake": sum(r["y"] == 1 for r in clean), "chance": float(np.mean([r["y"] for r in clean])), "ap": _ap(clean), "fake_acc": _acc(clean, 1, thr),
           "real_acc": _acc(clean, 0, thr), "sharp_ap": _ap(fold["sharpness"])}
    camera = [r for r in clean if r["y"] == 0 and r["g"] in CAMERA_SETS]
    out["camera_acc"] = _acc(camera, 0, thr)
    for spec in PERTURBATIONS:
        out[f"ap {spec}"] = _ap(fold[spec])
        out[f"real_acc {spec}"] = _acc(fold[spec], 0, thr)
        out[f"sharp_ap {spec}"] = _ap(fold[f"sharpness {spec}"])
    return out


def per_real_set(rows, thr) -> dict[str, tuple[int, float]]:
    sets = sorted({r["g"] for r in rows if r["y"] == 0})
    return {g: (sum(1 for r in rows if r["y"] == 0 and r["g"] == g), _acc([r for r in rows if r["g"] == g], 0, thr))
            for g in sets}


# ---------------------------------------------------------------------------------------- document
def _decoder_table() -> list[str]:
    from realjudge.synthesize.decoders import shipped_decoders

    lines = ["| decoder | upsampling | down | latent channels | parameters (fp16 file) | PSNR (dB) | sharpness ratio | training |",
             "|---|---|---|---|---|---|---|---|"]
    for folder in shipped_decoders():
        m = json.loads((folder / "decoder.json").read_text())
        sp, v, t = m["spec"], m["validation"], m["training"]
        size = (folder / "model.safetensors").stat().st_size / 1e6
        lines.append(f"| `{m['name']}` | {sp['upsample']} | {sp['factor']}x | {sp['latent']} | {size:.1f} MB | {v['psnr_db']} | "
                     f"{v['sharpness_ratio']} | {t['steps']} steps, {t['seconds']:.0f} s |")
    return lines


def _lofo_tables(lofo: dict) -> list[str]:
    out = []
    for name, entry in lofo.items():
        folds = entry["folds"]
        if not folds:
            continue
        out += [f"### `{name}`", "",
                "| held out | n fake | chance AP | AP | sharpness AP | fake acc | real acc | camera acc | AP JPEG 75 | "
                "AP 0.5x | sharpness AP JPEG 75 | sharpness AP 0.5x |", "|---" * 12 + "|"]
        rows = []
        for fold in folds.values():
            r = fold_row(fold)
            rows.append((fold, r))
            out.append(f"| {fold['held_out'] if fold['held_out'] != 'all' else '**every family (synthesized fakes only)**'} | "
                       f"{r['n_fake']} | {_f(r['chance'])} | {_f(r['ap'])} | {_f(r['sharp_ap'])} | {_f(r['fake_acc'])} | {_f(r['real_acc'])} | "
                       f"{_f(r['camera_acc'])} | {_d(r['ap jpeg:75'], r['ap'])} | {_d(r['ap downscale:0.5'], r['ap'])} | "
                       f"{_f(r['sharp_ap jpeg:75'])} | {_f(r['sharp_ap downscale:0.5'])} |")
        lo = [r for f, r in rows if f["held_out"] != "all"]
        if lo:
            def mean(k):
                vals = [r[k] for r in lo if r[k] is not None]
                return float(np.mean(vals)) if vals else None
            out.append(f"| **mean of the left-out families** | | {_f(mean('chance'))} | **{_f(mean('ap'))}** | {_f(mean('sharp_ap'))} | "
                       f"**{_f(mean('fake_acc'))}** | {_f(mean('real_acc'))} | {_f(mean('camera_acc'))} | "
                       f"{_d(mean('ap jpeg:75'), mean('ap'))} | {_d(mean('ap downscale:0.5'), mean('ap'))} | "
                       f"{_f(mean('sharp_ap jpeg:75'))} | {_f(mean('sharp_ap downscale:0.5'))} |")
        out += ["", f"Trained {len(folds)} fold(s) in {entry['seconds'] / 60:.0f} min on this machine's CPU.", ""]
    return out


def _lofo_real_sets(entry: dict) -> list[str]:
    """Real accuracy per real set on the protocol's test-side reals (the same photographs in every fold),
    each fold at its own threshold, averaged over the leave-one-family-out folds."""
    folds = [f for f in entry["folds"].values() if f["held_out"] != "all"]
    if not folds:
        return []
    conds = ["clean"] + REAL_PROCESSING
    table: dict[str, dict[str, list]] = {}
    for f in folds:
        for c in conds:
            for g, (n, acc) in per_real_set([r for r in f[c] if r["y"] == 0], f["threshold"]).items():
                table.setdefault(g, {}).setdefault(c, []).append((n, acc))
    lines = ["| real set | n | " + " | ".join(conds) + " |", "|---" * (2 + len(conds)) + "|"]
    for g, cols in sorted(table.items()):
        n = cols["clean"][0][0]
        lines.append(f"| {g}{' (camera)' if g in CAMERA_SETS else ''} | {n} | " + " | ".join(
            _f(float(np.mean([a for _, a in cols[c]]))) if c in cols else "n/a" for c in conds) + " |")
    for label, keep in (("**camera photographs**", lambda g: g in CAMERA_SETS), ("**all reals**", lambda g: True)):
        vals = []
        for c in conds:
            accs = [_acc([r for r in f[c] if r["y"] == 0 and keep(r["g"])], 0, f["threshold"]) for f in folds]
            accs = [a for a in accs if a is not None]
            vals.append(_f(float(np.mean(accs))) if accs else "n/a")
        n = sum(1 for r in folds[0]["clean"] if r["y"] == 0 and keep(r["g"]))
        lines.append(f"| {label} | {n} | " + " | ".join(vals) + " |")
    return lines


def _real_sets_table(final: dict) -> list[str]:
    thr = final["threshold"]
    clean = per_real_set(final["clean"], thr)
    procs = {spec: per_real_set(final[spec], thr) for spec in REAL_PROCESSING if spec in final}
    lines = ["| real set | n | clean | " + " | ".join(procs) + " |", "|---" * (3 + len(procs)) + "|"]
    for g, (n, acc) in clean.items():
        lines.append(f"| {g}{' (camera)' if g in CAMERA_SETS else ''} | {n} | {_f(acc)} | " +
                     " | ".join(_f(p.get(g, (0, None))[1]) for p in procs.values()) + " |")
    cam = [r for r in final["clean"] if r["y"] == 0 and r["g"] in CAMERA_SETS]
    lines.append(f"| **camera photographs** | {len(cam)} | **{_f(_acc(cam, 0, thr))}** | " + " | ".join(
        f"**{_f(_acc([r for r in final[s] if r['g'] in CAMERA_SETS], 0, thr))}**" for s in procs) + " |")
    lines.append(f"| **all reals** | {sum(n for n, _ in clean.values())} | **{_f(_acc(final['clean'], 0, thr))}** | " +
                 " | ".join(f"**{_f(_acc(final[s], 0, thr))}**" for s in procs) + " |")
    fams: dict[str, list] = {}
    for r in final["clean"]:
        if r["y"] == 1:
            fams.setdefault(FAMILIES.get(r["g"], r["g"]), []).append(r)
    lines += ["", "| family (validation fakes) | n | fake acc | AP vs every validation real |", "|---|---|---|---|"]
    reals = [r for r in final["clean"] if r["y"] == 0]
    for fam, rows in sorted(fams.items()):
        lines.append(f"| {fam} | {len(rows)} | {_f(_acc(rows, 1, thr))} | {_f(_ap(rows + reals))} |")
    return lines


def _crops_table(crops: dict, thr: float) -> list[str]:
    lines = ["| crops | validation AP | real acc | fake acc | seconds for the split (shared machine; speed: docs/RESULTS.md) |", "|---|---|---|---|---|"]
    for n, e in crops.items():
        rows = e["scores"]
        lines.append(f"| {n} | {_f(_ap(rows))} | {_f(_acc(rows, 0, thr))} | {_f(_acc(rows, 1, thr))} | {e['seconds']:.1f} |")
    return lines


def write() -> None:
    synth, lofo, final, crops = _load("synth"), _load("lofo") or {}, _load("final"), _load("crops")
    missing = [k for k, v in {"synth": synth, "lofo": lofo, "final": final, "crops": crops}.items() if not v]
    L = ["# NTF: the natural-resolution detector and how it generalises", "",
         "Written by `python benchmarks/natural_report.py write` from the measurements of "
         "`python benchmarks/natural_report.py run synth lofo final crops` (JSON under `runs/natural_report/`). "
         "Fake is the positive class; AP is average precision. The earlier Stable-Diffusion-only protocols "
         "(leave one SD version out, ablations, CIFAKE) are in [NTF-SD.md](NTF-SD.md).", ""]
    if missing:
        L += [f"Steps not run yet: {', '.join(missing)}.", ""]
    L += ["## The method", "",
          "NTF (Liang et al., \"Let Real Images be as a Judger\"): stage 1 learns what real photographs share "
          "(self-supervised, on every training-side real photograph: view-invariant heterogeneous features, "
          "natural-trace prototypes for the homogeneous ones, variance, usage and orthogonality terms); stage 2 "
          "adds fakes with a soft contrastive loss in which fakes are only pushed away from the traces and from "
          "reals, beside a BCE head; the score fuses the head with the proximity to the traces (fitted on "
          "validation). See `src/realjudge/models/ntf.py` and `models/ntf_losses.py`.", "",
          "What is new in this detector is the data it learns from:", "",
          "1. **Both shared zips**: 450 + 108 public fakes from 12 generator sources, 303 ImageNet photographs and "
          "382 camera, phone, lossless and web photographs.",
          "2. **Fakes made from real photographs** (`realjudge data synthesize`): every real photograph of both zips, "
          "centre-cropped to 256 px, is passed through two of six small autoencoders trained here on the shared real "
          "photographs (`realjudge data train-decoders`), one per upsampling style that generators use. The copy "
          "keeps the photograph's content, size and compression history, so only the decoder's trace separates the "
          "pair, and both members are written alike (PNG). Where a reconstruction is softer than its photograph, "
          "the photograph is also written blurred to the same mean |Laplacian|, labelled real, so that blur is on "
          "both sides of the pair.",
          "3. **Training augmentation alike for both classes**: random 64-px patches (never resampled, except the "
          "named rescale augmentations: half of them downscaled by 0.5-1x, a fifth enlarged by 1-2x bicubically, "
          "because every enlarged photograph shows interpolation), random JPEG 60-95, flips, blur.",
          "4. **Selection by leaving whole generator families out**, not by a random split.", ""]
    L += ["## The decoders", "", "Trained by `realjudge data train-decoders` on 48-px patches of the shared real "
          "photographs (L1 on pixels plus L1 on Laplacians); PSNR and sharpness ratio (mean |Laplacian| of the "
          "reconstruction over that of the photograph; 1.0 = as sharp) on held-out patches of held-out photographs. "
          "They ship in `src/realjudge/shipped/decoders/`.", ""] + _decoder_table() + [""]
    if synth:
        L += ["## The synthesized pairs", "",
              f"{synth['n_fakes']} reconstructions of {synth['n_untouched']} photographs "
              f"({', '.join(f'{k}: {v}' for k, v in synth['per_decoder'].items())}), and "
              f"{synth['n_real_copies'] - synth['n_untouched']} sharpness-matched real copies.", "",
              f"- The trivial sharpness score separates reconstructions from their untouched photographs with AP "
              f"{_f(_ap(synth['sharpness_pairs_untouched']))} (chance: "
              f"{_f(synth['n_fakes'] / (synth['n_fakes'] + synth['n_untouched']))}), and from all real copies, matched "
              f"ones included, with AP {_f(_ap(synth['sharpness_pairs_all']))} (chance: "
              f"{_f(synth['n_fakes'] / len(synth['sharpness_pairs_all']))}): the matched copies take blur away as a cue.", ""]
    if lofo:
        L += ["## Leave one generator family out", "",
              f"Reals and prompt groups are split by a salted hash (test fraction {TEST_FRACTION}); a synthesized pair "
              "follows its photograph's side and only ever trains. Each fold trains the recipe from scratch on the "
              "other families' fakes, the synthesized fakes and the training-side reals, calibrates its threshold on "
              "its own validation split (never on the held-out family), and is tested on the left-out family against "
              "every test-side real. *fake acc* and *real acc* are at that fold's own threshold; *camera acc* is real "
              "accuracy on the camera and phone JPEGs. *Sharpness AP* is the trivial mean-|Laplacian| score on the "
              "same images: a detector that is no better than it has learnt blur.", ""]
        L += _lofo_tables(lofo)
        for name, entry in lofo.items():
            rs = _lofo_real_sets(entry)
            if rs:
                L += [f"Real photographs stay real (`{name}`): real accuracy per real set on the test-side reals, clean "
                      "and after processing applied to the decoded image, each fold at its own threshold, mean over the "
                      "left-out-family folds:", ""] + rs + [""]
    if final:
        L += ["## The shipped detector on its validation split", "",
              f"`{final['bundle']}` (shipped as `natural`), threshold p_fake >= {final['threshold']:.3f} "
              f"(rule `{final['calibration'].get('rule', 'see bundle.json')}`). Validation images are both zips' images "
              "whose split key falls in the validation fraction (the synthesized copies are left out here).", "",
              "Real accuracy per real set, clean and after common processing (the processing is applied to the "
              "decoded image before scoring):", ""] + _real_sets_table(final) + [""]
    if crops and final:
        L += ["## Accuracy against crop count", "",
              "The shipped bundle on the same validation images, scoring n crops of 64 px (at most 5: centre and "
              "corners; more: an even grid), at its calibrated threshold (calibrated for 16 crops):", ""]
        L += _crops_table(crops, final["threshold"]) + [""]
    notes = ROOT / "docs" / "ntf" / "natural-findings.md"
    if notes.exists():
        L += [notes.read_text().rstrip(), ""]
    (ROOT / "docs" / "NTF.md").write_text("\n".join(L) + "\n")
    print(f"wrote docs/NTF.md{' (missing: ' + ', '.join(missing) + ')' if missing else ''}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["write"]:
        write()
        return
    if argv[:1] != ["run"] or not argv[1:] or any(a not in STEPS and a.split(":")[0] != "lofo" for a in argv[1:]):
        sys.exit(f"usage: natural_report.py run {{{','.join(STEPS)}}}... | lofo:VARIANT | write")
    import torch

    torch.set_num_threads(2)
    for a in argv[1:]:
        if a.startswith("lofo:"):
            step_lofo(a.split(":", 1)[1].split(","))
        else:
            STEPS[a]()


if __name__ == "__main__":
    main(sys.argv[1:])
