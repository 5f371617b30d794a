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
- The uncertain band (rule `local error rate`, `fit_error_band`) is where the validation data say
  verdicts are unreliable: on each side of the threshold, the scores whose local error rate (the
  share of wrong verdicts among the `window` validation images nearest in score) exceeds
  `band_error` (default 0.1: one verdict in ten wrong). A band so fitted can be empty when the
  errors lie far from the threshold; it always holds the threshold's own uncertainty: the 95%
  interval of the thresholds the same rule picks on 200 bootstrap resamples of the validation split
  (a score there could get either verdict from an equally justified calibration). The fit is recorded in the calibration (`band_fit`: rule, parameters,
  `coverage` = share of validation images outside the band, `accuracy_outside`, `error_inside`).
- `fit_band` (the earlier rule, kept for comparison): the narrowest interval around the threshold
  outside which at most `target_error` of the validation images are wrong, capped at
  `max_band_share` of them.
"""

from __future__ import annotations

import math
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
    band_fit: dict | None = None  # how the uncertain band was fitted, and its coverage on the validation split

    def to_json(self) -> dict:
        d = asdict(self)
        d["uncertain_band"] = list(self.uncertain_band)
        if d["band_fit"] is None:
            del d["band_fit"]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Calibration":
        return cls(float(d.get("temperature", 1.0)), float(d.get("threshold", 0.5)), tuple(d.get("uncertain_band", (0.5, 0.5))),
                   str(d.get("rule", "balanced accuracy")), float(d.get("offset", 0.0)), d.get("band_fit"))

    def probability(self, logits: np.ndarray) -> np.ndarray:
        z = (np.asarray(logits, dtype=np.float64) - self.offset) / self.temperature
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def model_logit(self, p: np.ndarray) -> np.ndarray:
        """The model's own logit behind a calibrated score (the inverse of `probability`)."""
        p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
        return self.temperature * np.log(p / (1 - p)) + self.offset

    def verdict(self, p: float, threshold: float | None = None) -> str:
        """fake, real or uncertain. The band belongs to the calibrated threshold: at any other
        threshold (a user's choice) the verdict is the plain comparison."""
        t = self.threshold if threshold is None else threshold
        lo, hi = self.uncertain_band
        if t == self.threshold and lo < p < hi:
            return "uncertain"
        return "fake" if p >= t else "real"


def check_threshold(value, what: str = "threshold") -> float:
    """A decision threshold on p_fake as a float in [0, 1]; anything else is a usage error."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number between 0 and 1, got {value!r}") from None
    if not (math.isfinite(t) and 0.0 <= t <= 1.0):
        raise UsageError(f"{what} must be between 0 and 1, got {value!r}")
    return t


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


def _balanced_threshold_fast(p: np.ndarray, y: np.ndarray) -> float:
    """`fit_threshold` in O(n log n) (sorted scores, cumulative counts), for bootstrap resamples."""
    p, y = np.asarray(p, np.float64), np.asarray(y).astype(bool)
    if y.all() or (~y).all():
        return 0.5
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    n_fake, n_real = ys.sum(), (~ys).sum()
    # Cut after index k (k = 0..n): below the cut real, above it fake.
    reals_below = np.concatenate([[0], np.cumsum(~ys)])
    fakes_below = np.concatenate([[0], np.cumsum(ys)])
    score = 0.5 * ((n_fake - fakes_below) / n_fake + reals_below / n_real)
    edges = np.concatenate([[ps[0] - 1e-6], (ps[1:] + ps[:-1]) / 2, [ps[-1] + 1e-6]])
    valid = np.concatenate([[True], ps[1:] > ps[:-1], [True]])
    score = np.where(valid, score, -1)
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(edges[best[np.argmin(np.abs(edges[best] - 0.5))]])


def threshold_interval(p: np.ndarray, labels: np.ndarray, refit, n_boot: int = 200, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Where the threshold lands when `refit(p, labels)` is run on bootstrap resamples of the
    validation split: the central `level` percentile interval of those thresholds."""
    p = np.asarray(p, np.float64)
    y = np.asarray(labels).astype(bool)
    if len(p) < 2:
        t = float(refit(p, y)) if len(p) else 0.5
        return (t, t)
    rng = np.random.default_rng(seed)
    ts = []
    for _ in range(n_boot):
        i = rng.integers(0, len(p), len(p))
        ts.append(refit(p[i], y[i]))
    a = (1 - level) / 2
    return float(np.quantile(ts, a)), float(np.quantile(ts, 1 - a))


def band_figures(p: np.ndarray, labels: np.ndarray, threshold: float, band: tuple[float, float]) -> dict:
    """Coverage (share of images outside the band, i.e. given a verdict), accuracy outside, error inside."""
    p = np.asarray(p, np.float64)
    y = np.asarray(labels).astype(bool)
    lo, hi = band
    inside = (p > lo) & (p < hi)
    right = (p >= threshold) == y
    out = ~inside
    return {"n": int(len(p)), "coverage": float(out.mean()) if len(p) else None,
            "accuracy_outside": float(right[out].mean()) if out.any() else None,
            "error_inside": float((~right[inside]).mean()) if inside.any() else None,
            "accuracy_all": float(right.mean()) if len(p) else None,
            "n_inside": int(inside.sum())}


def fit_error_band(p: np.ndarray, labels: np.ndarray, threshold: float, band_error: float = 0.1,
                   window: int | None = None, interval: tuple[float, float] | None = None, refit=None,
                   n_boot: int = 200, seed: int = 0) -> tuple[tuple[float, float], dict]:
    """The band where the local validation error rate exceeds `band_error`, never narrower than the
    threshold's own 95% bootstrap interval (where the same rule puts the threshold on resamples of
    the validation split: a score in it could get either verdict from an equally good calibration).
    Returns (band, fit record with coverage)."""
    p = np.asarray(p, np.float64)
    y = np.asarray(labels).astype(bool)
    n = len(p)
    if n == 0:
        return (threshold, threshold), {"rule": "local error rate", "n": 0}
    w = int(window or max(20, round(0.02 * n)))
    wrong = (p >= threshold) != y
    edges = []
    for side in (-1, 1):
        rows = np.flatnonzero(p < threshold) if side < 0 else np.flatnonzero(p >= threshold)
        rows = rows[np.argsort(np.abs(p[rows] - threshold), kind="stable")]  # nearest the threshold first
        edge = threshold
        if len(rows):
            k = min(w, len(rows))
            # Error rate of the k images nearest in score around each one, walking away from the threshold.
            err = np.convolve(wrong[rows].astype(np.float64), np.ones(k) / k, mode="same")
            over = np.flatnonzero(err > band_error)
            if len(over):
                edge = float(p[rows[over.max()]])
        edges.append(edge)
    if interval is None:
        interval = threshold_interval(p, y, refit or _balanced_threshold_fast, n_boot, seed)
    eps = 1e-9
    lo = max(0.0, min(edges[0], interval[0], threshold) - eps)
    hi = min(1.0, max(edges[1], interval[1], threshold) + eps)
    fit = {"rule": "local error rate", "band_error": band_error, "window": w,
           "threshold_interval": [float(interval[0]), float(interval[1])],
           "min_width_from": f"95% interval of the threshold refitted on {n_boot} bootstrap resamples",
           "error_rate_edges": [float(edges[0]), float(edges[1])]}
    fit |= band_figures(p, y, threshold, (lo, hi))
    return (float(lo), float(hi)), fit


THRESHOLD_RULES = ("balanced", "real_accuracy")
BAND_RULES = ("error_rate", "target_error")


def _threshold_refit(threshold_rule: str, min_real_accuracy: float | None):
    """The threshold rule as a function of (p, labels), for the bootstrap."""
    if threshold_rule == "real_accuracy":
        return lambda p, y: real_accuracy_floor(p, y, min_real_accuracy)
    if min_real_accuracy is not None:
        return lambda p, y: max(_balanced_threshold_fast(p, y), real_accuracy_floor(p, y, min_real_accuracy))
    return _balanced_threshold_fast


def calibrate(logits: np.ndarray, labels: np.ndarray, target_error: float = 0.01,
              min_real_accuracy: float | None = None, threshold_rule: str = "balanced",
              band_rule: str = "error_rate", band_error: float = 0.1) -> Calibration:
    check_threshold_rule(threshold_rule, min_real_accuracy)
    if band_rule not in BAND_RULES:
        raise UsageError(f"band rule must be one of {', '.join(BAND_RULES)}, got {band_rule!r}")
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
    if band_rule == "error_rate":
        cal.uncertain_band, cal.band_fit = fit_error_band(p, labels, cal.threshold, band_error,
                                                          refit=_threshold_refit(threshold_rule, min_real_accuracy))
    else:
        cal.uncertain_band = fit_band(p, labels, cal.threshold, target_error)
        cal.band_fit = {"rule": "target error", "target_error": target_error} | band_figures(p, labels, cal.threshold,
                                                                                             cal.uncertain_band)
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


def refit_band(cal: Calibration, logits: np.ndarray, labels: np.ndarray, band_error: float = 0.1,
               threshold_rule: str | None = None, min_real_accuracy: float | None = None) -> Calibration:
    """The same temperature, offset and threshold, with the uncertain band refitted by `fit_error_band`
    on these validation logits (a shipped bundle refitted without retraining)."""
    from dataclasses import replace

    p = cal.probability(logits)
    if threshold_rule == "real_accuracy" or "(fixed)" in cal.rule:
        # The threshold is a quantile of the reals, refitted as such in the bootstrap (in score space, 0.5 here).
        share = min_real_accuracy if min_real_accuracy is not None else float(cal.rule.split()[2])
        refit = lambda q, y: real_accuracy_floor(q, y, share)  # noqa: E731
    elif "at least" in cal.rule:
        share = min_real_accuracy if min_real_accuracy is not None else float(cal.rule.rsplit(" ", 1)[1])
        refit = lambda q, y: max(_balanced_threshold_fast(q, y), real_accuracy_floor(q, y, share))  # noqa: E731
    else:
        refit = _balanced_threshold_fast
    band, fit = fit_error_band(p, labels, cal.threshold, band_error, refit=refit)
    return replace(cal, uncertain_band=band, band_fit=fit | {"refit": "band only; temperature and threshold kept"})
