"""Calibration on the validation split: temperature, decision threshold and uncertain band.

- Temperature `T` minimises the validation negative log-likelihood of `sigmoid(logit / T)`.
- The threshold maximises balanced accuracy on the calibrated validation scores, among midpoints
  between neighbouring scores (ties: nearest 0.5). With `min_real_accuracy` it is raised, when
  needed, until that share of the validation reals falls below it: an operating point for users to
  whom calling a real photograph fake costs more than missing a fake.
- `T` is searched in [0.2, 20]: separable validation data would otherwise drive it to zero.
- The uncertain band is the narrowest interval around the threshold, grown one validation score at
  a time from the threshold outwards, until the images outside it are classified with at most
  `target_error` error, holding at most `max_band_share` of the validation images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Calibration:
    temperature: float = 1.0
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = (0.5, 0.5)
    rule: str = "balanced accuracy"  # how the threshold was chosen on the validation split

    def to_json(self) -> dict:
        d = asdict(self)
        d["uncertain_band"] = list(self.uncertain_band)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Calibration":
        return cls(float(d.get("temperature", 1.0)), float(d.get("threshold", 0.5)), tuple(d.get("uncertain_band", (0.5, 0.5))),
                   str(d.get("rule", "balanced accuracy")))

    def probability(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / self.temperature
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def verdicts(self, p: np.ndarray) -> list[str]:
        lo, hi = self.uncertain_band
        out = []
        for v in np.asarray(p, dtype=np.float64):
            if lo < v < hi:
                out.append("uncertain")
            else:
                out.append("fake" if v >= self.threshold else "real")
        return out


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.2), np.log(20.0), 200)):
        s = z / t
        nll = np.mean(np.logaddexp(0, s) - y * s)
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def fit_threshold(p: np.ndarray, labels: np.ndarray) -> float:
    p = np.asarray(p, np.float64)
    y = np.asarray(labels).astype(bool)
    if y.all() or (~y).all():
        return 0.5
    u = np.unique(p)
    # Midpoints between neighbouring scores: on separable data every gap ties, and the one nearest 0.5 wins.
    cands = np.unique(np.concatenate([(u[1:] + u[:-1]) / 2, [0.5]]))
    best, best_score = 0.5, -1.0
    for t in cands:
        pred = p >= t
        score = 0.5 * (pred[y].mean() + (~pred[~y]).mean())
        if score > best_score + 1e-12 or (abs(score - best_score) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_score = float(t), score
    return best


def real_accuracy_floor(p: np.ndarray, labels: np.ndarray, min_real_accuracy: float) -> float:
    """The lowest threshold (a midpoint between neighbouring scores) below which at least
    `min_real_accuracy` of the real images' scores fall."""
    p = np.asarray(p, np.float64)
    real = np.sort(p[~np.asarray(labels).astype(bool)])
    if len(real) == 0:
        return 0.0
    k = int(np.ceil(min_real_accuracy * len(real) - 1e-9))
    if k <= 0:
        return 0.0
    edge = real[k - 1]
    above = p[p > edge]
    return float((edge + above.min()) / 2) if len(above) else float(min(1.0, edge + 1e-9))


def fit_band(p: np.ndarray, labels: np.ndarray, threshold: float, target_error: float = 0.01,
             max_band_share: float = 0.15) -> tuple[float, float]:
    p = np.asarray(p, np.float64)
    y = np.asarray(labels).astype(bool)
    n = len(p)
    if n == 0:
        return (threshold, threshold)
    order = np.argsort(np.abs(p - threshold))
    wrong = (p >= threshold) != y
    inside = np.zeros(n, bool)
    lo = hi = threshold
    errors_outside = wrong.sum()
    for k, i in enumerate(order):
        if errors_outside / max(1, n - k) <= target_error or k >= max_band_share * n:
            break
        inside[i] = True
        errors_outside -= wrong[i]
        lo, hi = min(lo, p[i]), max(hi, p[i])
    if lo == hi:
        return (threshold, threshold)
    # Open interval in `verdicts`: widen by a hair so the extreme scores counted inside stay inside.
    eps = 1e-9
    return (float(max(0.0, lo - eps)), float(min(1.0, hi + eps)))


def calibrate(logits: np.ndarray, labels: np.ndarray, target_error: float = 0.01,
              min_real_accuracy: float | None = None) -> Calibration:
    t = fit_temperature(logits, labels)
    cal = Calibration(temperature=t)
    p = cal.probability(logits)
    cal.threshold = fit_threshold(p, labels)
    if min_real_accuracy is not None:
        floor = real_accuracy_floor(p, labels, min_real_accuracy)
        cal.rule = f"balanced accuracy, real accuracy at least {min_real_accuracy:g}"
        if floor > cal.threshold:
            cal.threshold = floor
    cal.uncertain_band = fit_band(p, labels, cal.threshold, target_error)
    return cal
