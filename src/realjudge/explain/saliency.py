"""Saliency statistics: does the detector look at the object or at the background?

The CIFAKE paper reports, from a handful of Grad-CAM examples, that its network looks at small
imperfections in the background rather than at the object. Here that claim is measured over a whole
validation set as the share of each map's mass that falls on the object.

There is no segmentation of CIFAKE, so "object" needs a proxy; two are used, both saliency-free
(they never look at the map, so they cannot be fitted to it):
- `ellipse_mask`: a centred ellipse (semi-axes 0.35 x the side: about 38% of a square frame), since
  CIFAR-10 photographs, and the prompts' images, frame one centred object. Weakness: objects
  that are off-centre, small (birds, distant planes) or fill the frame (close-up cats) are
  misclassified pixel-wise; it measures "centre vs periphery" as much as "object vs background".
- `contrast_mask`: pixels whose colour differs from the border's median colour by more than an
  Otsu threshold, on the idea that a 32x32 frame's border is mostly background. Weakness: fails
  on cluttered or object-coloured backgrounds and on objects that touch the border.

A map spread uniformly would put a share equal to the mask's area on the object, so every share is
reported with that area and their ratio (the enrichment: > 1 means attention concentrates on the
object, < 1 on the background).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

ELLIPSE_AXES = 0.35
VERDICT_GROUPS = ("TP", "TN", "FP", "FN")


def ellipse_mask(size: int, axes: float = ELLIPSE_AXES) -> np.ndarray:
    """S x S bool: a centred ellipse (here a circle) of semi-axes `axes * size`, measured at pixel centres."""
    c = (np.arange(size) + 0.5) / size - 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return (yy / axes) ** 2 + (xx / axes) ** 2 <= 1.0


def otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """The threshold that maximises the between-class variance of `values` (Otsu 1979)."""
    v = np.asarray(values, np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    p = hist / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    w1 = 1 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    return float(edges[int(np.argmax(between)) + 1])


def contrast_mask(image: np.ndarray, border: int = 2) -> np.ndarray:
    """S x S bool: pixels far (Otsu) in RGB from the median colour of the `border`-pixel frame."""
    img = np.asarray(image, np.float32)
    ring = np.ones(img.shape[:2], bool)
    ring[border:-border, border:-border] = False
    background = np.median(img[ring], axis=0)
    dist = np.linalg.norm(img - background, axis=-1)
    return dist > otsu_threshold(dist)


def object_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per map: mass on the mask / total mass. NaN for an all-zero map (no evidence to place)."""
    maps = np.asarray(maps, np.float64)
    masks = np.broadcast_to(np.asarray(masks, bool), maps.shape)
    total = maps.sum(axis=(-2, -1))
    inside = (maps * masks).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def peak_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per map: whether its maximum lies on the mask."""
    maps = np.asarray(maps)
    masks = np.broadcast_to(np.asarray(masks, bool), maps.shape)
    flat = maps.reshape(len(maps), -1).argmax(1)
    return masks.reshape(len(maps), -1)[np.arange(len(maps)), flat]


def verdict_groups(labels: Iterable[int], predictions: Iterable[int]) -> list[str]:
    """TP / TN / FP / FN with fake as the positive class."""
    return [("T" if y == p else "F") + ("P" if p == 1 else "N") for y, p in zip(labels, predictions)]


def summarise(shares: np.ndarray, areas: np.ndarray, peaks: np.ndarray, groups: Iterable[Any]) -> dict[str, dict]:
    """Per group and overall ("all"): n, mean object share, mean mask area, enrichment, peak-on-object rate.

    Means skip NaN shares (all-zero maps); `n_empty` counts them.
    """
    shares, areas, peaks = np.asarray(shares, float), np.asarray(areas, float), np.asarray(peaks, bool)
    groups = np.asarray([str(g) for g in groups], dtype=object)
    out: dict[str, dict] = {}
    for name in ["all"] + sorted(set(groups), key=_group_order):
        rows = np.ones(len(groups), bool) if name == "all" else groups == name
        ok = rows & np.isfinite(shares)
        share = float(np.mean(shares[ok])) if ok.any() else float("nan")
        area = float(np.mean(areas[ok])) if ok.any() else float("nan")
        out[name] = {"n": int(rows.sum()), "n_empty": int((rows & ~np.isfinite(shares)).sum()),
                     "object_share": share, "area": area,
                     "enrichment": share / area if ok.any() and area > 0 else float("nan"),
                     "peak_on_object": float(np.mean(peaks[ok])) if ok.any() else float("nan")}
    return out


def _group_order(name: str):
    return (VERDICT_GROUPS.index(name), "") if name in VERDICT_GROUPS else (len(VERDICT_GROUPS), name)


def batch_maps(model, policy, pixels: np.ndarray, signs: np.ndarray, method: str = "gradcam",
               batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Maps for many N x S x S x 3 uint8 views at once; `signs` +1 explains fake, -1 real."""
    from .gradcam import class_maps

    out = []
    for i in range(0, len(pixels), batch_size):
        x = policy.model_input(pixels[i:i + batch_size], device)
        out.append(class_maps(model, x, signs[i:i + batch_size], method))
    return np.concatenate(out) if out else np.zeros((0,) + pixels.shape[1:3], np.float32)


def batch_gradcams(model, policy, pixels: np.ndarray, signs: np.ndarray, batch_size: int = 256,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """Grad-CAM and Grad-CAM++ maps of many views, one backward pass per batch for both."""
    import torch

    from .gradcam import gradcam_both

    parts: dict[str, list[np.ndarray]] = {"gradcam": [], "gradcam++": []}
    for i in range(0, len(pixels), batch_size):
        x = policy.model_input(pixels[i:i + batch_size], device)
        sign = torch.as_tensor(np.asarray(signs[i:i + batch_size], np.float32)).to(device)
        for k, v in gradcam_both(model, x, sign).items():
            parts[k].append(v)
    return {k: np.concatenate(v) if v else np.zeros((0,) + pixels.shape[1:3], np.float32) for k, v in parts.items()}
