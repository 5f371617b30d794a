"""Data-bias audit: could file facts alone (format, size, JPEG quality and chroma subsampling,
aspect ratio, bytes per pixel) tell the classes apart? If so, a detector can learn the shortcut instead of the evidence.

`audit(samples)` reads each file's header only (no full decode), summarises every class, and fits
two tiny classifiers (a depth-3 decision tree and a logistic regression) on those facts alone with
stratified 5-fold cross-validation; it also scores each fact on its own (a depth-1 tree). A
balanced accuracy well above 0.5 means the classes differ in format, and that a detector's
accuracy on such data is not evidence of detection. `align(samples, out)` writes a copy in which
both classes went through the same processing: a centre crop of one size (no resampling) and one
JPEG encoder at one quality.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SourceError
from .samples import Sample, content_id, iter_sample_bytes

FEATURES = ("width", "height", "aspect", "log_pixels", "jpeg_quality", "bytes_per_pixel", "is_jpeg", "is_png",
            "chroma_full")
WARN_AT = 0.70  # cross-validated balanced accuracy from file facts alone


def file_facts(blob: bytes) -> dict[str, Any]:
    """Header facts of one image file, without decoding its pixels."""
    from PIL import Image

    from .decode import estimate_jpeg_quality

    im = Image.open(io.BytesIO(blob))
    w, h = im.size
    fmt = im.format or "?"
    q = estimate_jpeg_quality(im) if fmt == "JPEG" else None
    sub = None
    if fmt == "JPEG":
        try:
            from PIL import JpegImagePlugin

            sub = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(JpegImagePlugin.get_sampling(im), "other")
        except Exception:  # an odd JPEG: the subsampling is a fact we can do without
            sub = None
    return {"format": fmt, "width": w, "height": h, "aspect": w / h if h else 0.0, "jpeg_quality": q,
            "subsampling": sub, "bytes": len(blob), "bytes_per_pixel": len(blob) / max(1, w * h), "mode": im.mode}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(key):
        v = np.array([r[key] for r in rows if r[key] is not None], np.float64)
        if not len(v):
            return None
        return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}

    n = len(rows)
    sizes = Counter(f"{r['width']}x{r['height']}" for r in rows)
    quals = Counter(r["jpeg_quality"] for r in rows if r["jpeg_quality"] is not None)
    top_size, top_size_n = sizes.most_common(1)[0]
    out = {
        "n": n,
        "formats": dict(Counter(r["format"] for r in rows)),
        "subsampling": dict(Counter(r["subsampling"] for r in rows if r["subsampling"])),
        "width": stats("width"), "height": stats("height"), "aspect": stats("aspect"),
        "jpeg_quality": stats("jpeg_quality"), "bytes_per_pixel": stats("bytes_per_pixel"),
        "most_common_size": {"size": top_size, "share": top_size_n / n},
        "distinct_sizes": len(sizes),
    }
    if quals:
        q, qn = quals.most_common(1)[0]
        out["most_common_quality"] = {"quality": q, "share": qn / n}
    return out


def _matrix(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[r["width"], r["height"], r["aspect"], np.log(max(1, r["width"] * r["height"])),
                      -1 if r["jpeg_quality"] is None else r["jpeg_quality"], r["bytes_per_pixel"],
                      r["format"] == "JPEG", r["format"] == "PNG", r["subsampling"] == "4:4:4"] for r in rows], np.float64)


def shortcut_accuracy(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Cross-validated balanced accuracy of tiny classifiers on file facts only (chance: 0.5)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    k = int(min(5, np.bincount(y).min()))
    if k < 2:
        return {"folds": k, "tree": None, "logistic": None, "per_feature": {}}
    cv = StratifiedKFold(k, shuffle=True, random_state=seed)

    def score(model, cols):
        return float(np.mean(cross_val_score(model, x[:, cols], y, cv=cv, scoring="balanced_accuracy")))

    all_cols = list(range(x.shape[1]))
    out = {"folds": k,
           "tree": score(DecisionTreeClassifier(max_depth=3, random_state=seed), all_cols),
           "logistic": score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), all_cols),
           "per_feature": {}}
    for j, name in enumerate(FEATURES):
        if np.ptp(x[:, j]) > 0:
            out["per_feature"][name] = score(DecisionTreeClassifier(max_depth=1, random_state=seed), [j])
        else:
            out["per_feature"][name] = 0.5  # constant over the data set: separates nothing
    return out


def audit(samples: list[Sample], limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Per-class file facts and the shortcut test. `limit`: at most this many files per class (random)."""
    labelled = [s for s in samples if s.label in (0, 1)]
    if not labelled:
        raise SourceError("the data audit needs labelled images (real and fake)")
    if limit:
        rng = np.random.default_rng(seed)
        picked = []
        for lab in (0, 1):
            cls = [s for s in labelled if s.label == lab]
            rows = rng.choice(len(cls), min(limit, len(cls)), replace=False) if cls else []
            picked += [cls[i] for i in sorted(rows)]
        labelled = picked
    rows, labels, gens, errors = [], [], [], []
    for s, blob in iter_sample_bytes(labelled):
        if not isinstance(blob, bytes):
            errors.append(str(blob))
            continue
        try:
            rows.append(file_facts(blob))
        except Exception as err:  # unreadable header: reported, not fatal
            errors.append(f"{s.locator}: {err}")
            continue
        labels.append(s.label)
        gens.append(s.generator if s.label == 1 else None)
    if not rows:
        raise SourceError("no readable image in the audited data")
    y = np.array(labels)
    result: dict[str, Any] = {
        "n": len(rows), "n_errors": len(errors), "errors": errors[:20],
        "classes": {name: _summary([r for r, lab in zip(rows, y) if lab == k]) for k, name in ((0, "real"), (1, "fake"))
                    if (y == k).any()},
        "generators": {g: _summary([r for r, gg in zip(rows, gens) if gg == g]) for g in sorted({g for g in gens if g})},
    }
    if len(set(y.tolist())) == 2:
        sc = shortcut_accuracy(_matrix(rows), y, seed)
        best = max(v for v in (sc["tree"], sc["logistic"]) if v is not None) if sc["tree"] is not None else None
        sc["best"] = best
        sc["warning"] = bool(best is not None and best >= WARN_AT)
        result["shortcut"] = sc
    return result


def format_report(result: dict[str, Any]) -> str:
    """Plain-text report with a warning line when file facts alone separate the classes."""
    lines = []
    for name, c in list(result["classes"].items()) + [(f"fake/{g}", c) for g, c in result["generators"].items()]:
        q = c["jpeg_quality"]
        lines.append(
            f"{name:<14} n={c['n']:<6} formats={c['formats']} subsampling={c['subsampling']} "
            f"size={c['most_common_size']['size']} ({c['most_common_size']['share']:.0%} of files, {c['distinct_sizes']} distinct) "
            f"aspect median={c['aspect']['median']:.2f} "
            + (f"jpeg q median={q['median']:.0f} [{q['min']:.0f}..{q['max']:.0f}] " if q else "")
            + f"bytes/pixel median={c['bytes_per_pixel']['median']:.3f}")
    sc = result.get("shortcut")
    if sc and sc.get("tree") is not None:
        per = ", ".join(f"{k} {v:.2f}" for k, v in sorted(sc["per_feature"].items(), key=lambda kv: -kv[1]))
        lines.append(f"file facts alone, {sc['folds']}-fold balanced accuracy: tree {sc['tree']:.3f}, "
                     f"logistic {sc['logistic']:.3f} (chance 0.5); single facts: {per}")
        if sc["warning"]:
            lines.append(f"WARNING: format, size and compression alone separate the classes (balanced accuracy "
                         f"{sc['best']:.2f} >= {WARN_AT}). A detector can learn this shortcut: train on patches with "
                         "the same re-compression for both classes, evaluate on aligned data (--align).")
    if result["n_errors"]:
        shown = result["errors"]
        more = result["n_errors"] - len(shown)
        lines.append(f"{result['n_errors']} file(s) could not be read: " + "; ".join(shown) + (f"; and {more} more" if more > 0 else ""))
    return "\n".join(lines) + "\n"


def align(samples: list[Sample], out: str | Path, crop: int = 256, quality: int = 90) -> dict[str, Any]:
    """Re-encode both classes identically: centre crop of `crop` px (no resampling; images smaller
    than that on either side are left out and counted) and Pillow JPEG at `quality`, 4:2:0.
    Writes `images/...` and `manifest.csv` (path,label,generator,source) under `out`."""
    from PIL import Image

    from .decode import decode_bytes

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    written, skipped, errors = 0, 0, []
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "generator", "source"])
        for s, blob in iter_sample_bytes([s for s in samples if s.label in (0, 1)]):
            if not isinstance(blob, bytes):
                errors.append(str(blob))
                continue
            try:
                px = decode_bytes(blob, s.locator).pixels
            except Exception as err:
                errors.append(str(err))
                continue
            h, wd = px.shape[:2]
            if h < crop or wd < crop:
                skipped += 1
                continue
            y0, x0 = (h - crop) // 2, (wd - crop) // 2
            buf = io.BytesIO()
            Image.fromarray(px[y0:y0 + crop, x0:x0 + crop]).save(buf, "JPEG", quality=int(quality), subsampling=2)
            label = "fake" if s.label == 1 else "real"
            # Names come from the original content hash: no name carries the label beyond the manifest.
            rel = f"images/{content_id(blob)[:20]}.jpg"
            (out / rel).write_bytes(buf.getvalue())
            w.writerow([rel, label, s.generator if s.label == 1 else "", s.source])
            written += 1
    return {"out": str(out), "written": written, "skipped_smaller_than_crop": skipped, "errors": errors[:20],
            "crop": crop, "quality": quality}
