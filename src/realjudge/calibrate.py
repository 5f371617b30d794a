"""Calibration on the validation split: temperature, decision threshold and uncertain band.

- Temperature `T` minimises the validation negative log-likelihood of `sigmoid(logit / T)`.
- The threshold maximises balanced accuracy on the calibrated validation scores, among midpoints
  between neighbouring scores (ties: nearest 0.5). With `min_real_accuracy` it is raised, when
  needed, until that share of the validation reals falls below it: an operating point for users to
  whom calling a real photograph fake costs more than missing a fake.
- Rule `real_accuracy` fixes the operating point instead: the lowest threshold that keeps
  `min_real_accuracy` of the validation reals real (a fixed false-positive rate). Balanced accuracy
  puts the threshold wherever a small validation split's gap between the classes happens to be; on
  generators left out of training, lower thresholds kept more fakes, but also called more processed
  real photographs fake (docs/NTF.md, threshold rules). That threshold can lie far from 0.5,
  so the rule also stores a logit `offset` that moves it to p_fake = 0.5: a score reads the same
  way under every rule (at least 0.5 means fake), and the temperature still sets its spread.
- `T` is searched in [0.2, 20]: separable validation data would otherwise drive it to zero.
- The uncertain band is the narrowest interval around the threshold, grown one validation score at
  a time from the threshold outwards, until the images outside it are classified with at most
  `target_error` error, holding at most `max_band_share` of the validation images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import UsageError


@dataclass
class Calibration:
    temperature: float = 1.0
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = (0.5, 0.5)
    rule: str = "balanced accuracy"  # how the threshold was chosen on the validation split
    offset: float = 0.0  # subtracted from the logit before the temperature (rule real_accuracy: threshold -> 0.5)

    def to_json(self) -> dict:
        d = asdict(self)
        d["uncertain_band"] = list(self.uncertain_band)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Calibration":
        return cls(float(d.get("temperature", 1.0)), float(d.get("threshold", 0.5)), tuple(d.get("uncertain_band", (0.5, 0.5))),
                   str(d.get("rule", "balanced accuracy")), float(d.get("offset", 0.0)))

    def probability(self, logits: np.ndarray) -> np.ndarray:
        z = (np.asarray(logits, dtype=np.float64) - self.offset) / self.temperature
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def model_logit(self, p: np.ndarray) -> np.ndarray:
        """The model's own logit behind a calibrated score (the inverse of `probability`)."""
        p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
        return self.temperature * np.log(p / (1 - p)) + self.offset

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
    """The narrowest interval around `threshold` outside which at most `target_error` of the
    validation images are wrong, holding at most `max_band_share` of them. When the cap comes first,
    the band ends at the last error it took in: images beyond it are right, and calling them
    uncertain would only hide confident verdicts."""
    p = np.asarray(p, np.float64)
    y = np.asarray(labels).astype(bool)
    n = len(p)
    if n == 0:
        return (threshold, threshold)
    order = np.argsort(np.abs(p - threshold))
    wrong = (p >= threshold) != y
    errors_outside = wrong.sum()
    taken, last_error, met = 0, 0, False
    for k, i in enumerate(order):
        if errors_outside / max(1, n - k) <= target_error:
            met = True
            break
        if k >= max_band_share * n:
            break
        taken = k + 1
        errors_outside -= wrong[i]
        if wrong[i]:
            last_error = taken
    inside = order[:taken if met else last_error]
    if len(inside) == 0:
        return (threshold, threshold)
    lo, hi = min(threshold, p[inside].min()), max(threshold, p[inside].max())
    # Open interval in `verdicts`: widen by a hair so the extreme scores counted inside stay inside.
    eps = 1e-9
    return (float(max(0.0, lo - eps)), float(min(1.0, hi + eps)))


THRESHOLD_RULES = ("balanced", "real_accuracy")


def calibrate(logits: np.ndarray, labels: np.ndarray, target_error: float = 0.01,
              min_real_accuracy: float | None = None, threshold_rule: str = "balanced") -> Calibration:
    check_threshold_rule(threshold_rule, min_real_accuracy)
    t = fit_temperature(logits, labels)
    cal = Calibration(temperature=t)
    p = cal.probability(logits)
    if threshold_rule == "real_accuracy":
        cal.threshold = real_accuracy_floor(p, labels, min_real_accuracy)
        cal.rule = f"real accuracy {min_real_accuracy:g} (fixed)"
    else:
        cal.threshold = fit_threshold(p, labels)
        if min_real_accuracy is not None:
            cal.threshold = max(cal.threshold, real_accuracy_floor(p, labels, min_real_accuracy))
            cal.rule = f"balanced accuracy, real accuracy at least {min_real_accuracy:g}"
    cal.uncertain_band = fit_band(p, labels, cal.threshold, target_error)
    if threshold_rule == "real_accuracy":
        # Same decisions, rescaled so that the threshold reads 0.5.
        z = cal.model_logit(np.array([cal.threshold, *cal.uncertain_band]))
        cal.offset, cal.threshold = float(z[0]), 0.5
        cal.uncertain_band = tuple(float(v) for v in cal.probability(z[1:]))
    return cal


def check_threshold_rule(rule: str, min_real_accuracy: float | None) -> None:
    if rule not in THRESHOLD_RULES:
        raise UsageError(f"threshold rule must be one of {', '.join(THRESHOLD_RULES)}, got {rule!r}")
    if rule == "real_accuracy" and min_real_accuracy is None:
        raise UsageError("threshold rule 'real_accuracy' needs min_real_accuracy (the share of reals to call real)")
