import numpy as np
import pytest

from realjudge.calibrate import Calibration, calibrate, fit_band, fit_temperature, fit_threshold
from realjudge.metrics import binary_metrics, grouped_metrics


def test_metrics_fake_is_positive():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.7, 0.8, 0.4, 0.9])
    m = binary_metrics(y, p, 0.5)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["precision"] == 2 / 3 and m["recall"] == 2 / 3
    assert m["real_accuracy"] == 0.5 and m["fake_accuracy"] == 2 / 3
    assert 0 < m["roc_auc"] <= 1 and 0 < m["ap"] <= 1


def test_single_class_has_no_auc():
    m = binary_metrics(np.array([1, 1]), np.array([0.2, 0.9]))
    assert m["roc_auc"] is None and m["fake_accuracy"] == 0.5


def test_grouped_puts_each_generator_against_all_reals():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.9, 0.15])
    g = grouped_metrics(y, p, [None, None, "a", "b"], 0.5)
    assert g["a"]["n"] == 3 and g["a"]["ap"] == 1.0 and g["b"]["fake_accuracy"] == 0.0
    assert g["_mean_ap"] == (g["a"]["ap"] + g["b"]["ap"]) / 2


def test_temperature_shrinks_overconfident_logits():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    logits = np.where(rng.random(2000) < 0.8, 2 * y - 1, 1 - 2 * y) * 10.0  # 80% right, far too confident
    assert fit_temperature(logits, y) > 3


def test_threshold_and_band():
    y = np.array([0] * 50 + [1] * 50)
    p = np.concatenate([np.linspace(0.0, 0.6, 50), np.linspace(0.4, 1.0, 50)])
    t = fit_threshold(p, y)
    assert 0.4 <= t <= 0.6
    lo, hi = fit_band(p, y, t, target_error=0.0, max_band_share=0.5)
    assert lo < t < hi
    outside = (p <= lo) | (p >= hi)
    assert ((p[outside] >= t) == y[outside].astype(bool)).all()


def test_band_stops_at_its_last_error_when_the_cap_comes_first():
    # Two reals score 0.99: no band under the cap reaches them. The band takes in the one error near
    # the threshold (a fake at 0.45) and stops there, so confident verdicts on either side stay.
    y = np.array([0] * 50 + [1] * 50)
    p = np.concatenate([np.linspace(0.0, 0.3, 48), [0.99, 0.99], [0.45], np.linspace(0.7, 1.0, 49)])
    lo, hi = fit_band(p, y, 0.5, target_error=0.01, max_band_share=0.15)
    assert 0.3 < lo <= 0.45 and 0.5 <= hi < 0.7


def test_calibration_verdicts_use_band():
    cal = Calibration(1.0, 0.5, (0.4, 0.6))
    assert [cal.verdict(p) for p in np.array([0.1, 0.5, 0.9])] == ["real", "uncertain", "fake"]
    full = calibrate(np.array([-3.0, -2, 2, 3]), np.array([0, 0, 1, 1]))
    assert [full.verdict(p) for p in full.probability(np.array([-5.0, 5.0]))] == ["real", "fake"]


def test_real_accuracy_floor_raises_the_threshold_only_when_needed():
    import numpy as np

    from realjudge.calibrate import Calibration, calibrate

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(200), np.ones(200)].astype(int)
    logits = np.r_[rng.normal(-1, 1.2, 200), rng.normal(1, 1.2, 200)]
    plain = calibrate(logits, labels)
    strict = calibrate(logits, labels, min_real_accuracy=0.95)
    p = strict.probability(logits)
    assert np.mean(p[labels == 0] < strict.threshold) >= 0.95
    assert strict.threshold > plain.threshold and "0.95" in strict.rule
    assert Calibration.from_json(strict.to_json()) == strict
    # Already met at the balanced threshold: nothing moves.
    loose = calibrate(logits, labels, min_real_accuracy=0.1)
    assert loose.threshold == plain.threshold


def test_real_accuracy_rule_fixes_the_false_positive_rate_and_reads_half():
    from realjudge.errors import UsageError

    rng = np.random.default_rng(1)
    logits = np.r_[rng.normal(-2, 1, 200), rng.normal(2, 1, 200)]
    y = np.r_[np.zeros(200), np.ones(200)]
    bal = calibrate(logits, y)
    fixed = calibrate(logits, y, min_real_accuracy=0.9, threshold_rule="real_accuracy")
    assert fixed.threshold == 0.5 and fixed.rule == "real accuracy 0.9 (fixed)"
    p = fixed.probability(logits)
    assert np.mean(p[y == 0] < 0.5) == 0.9  # exactly the chosen share of reals is called real
    assert fixed.temperature == bal.temperature and fixed.offset != 0.0
    assert np.allclose(fixed.model_logit(p), logits)
    assert Calibration.from_json(fixed.to_json()) == fixed
    lo, hi = fixed.uncertain_band
    assert lo <= 0.5 <= hi
    with pytest.raises(UsageError, match="needs min_real_accuracy"):
        calibrate(logits, y, threshold_rule="real_accuracy")
    with pytest.raises(UsageError, match="threshold rule must be one of"):
        calibrate(logits, y, min_real_accuracy=0.9, threshold_rule="f1")
