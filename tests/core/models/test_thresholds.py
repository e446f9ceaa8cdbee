"""core.models.thresholds: operating thresholds chosen on validation probabilities with a known ROC (no MXNet)."""

import numpy as np
import pytest

from core.metrics import BinaryMetrics
from core.models.thresholds import choose_thresholds, format_threshold, sensitivity_key, short_decimal


def _known():
    """20 negatives at 0.02, 0.05, ..., 0.59 and 20 positives at 0.300, 0.335, ..., 0.965 (float32)."""
    negatives = 0.02 + 0.03 * np.arange(20)
    positives = 0.30 + 0.035 * np.arange(20)
    labels = np.r_[np.zeros(20), np.ones(20)].astype(int)
    return labels, np.r_[negatives, positives].astype(np.float32)


def _brute_force(labels, probs):
    """Sensitivity and specificity at every distinct score (a tile at or above it is called tumour)."""
    out = []
    for t in np.unique(probs):
        called = probs >= t
        out.append((float(t), called[labels == 1].mean(), (~called[labels == 0]).mean()))
    return out


def test_the_target_sensitivity_threshold_of_a_known_roc():
    labels, probs = _known()
    record = choose_thresholds(labels, probs, 0.95)
    # 19 of 20 positives need the threshold above 0.300 and at most 0.335; the highest negative under 0.335
    # is 0.32, so every threshold in (0.32, 0.335] calls the tiles alike: the shortest decimal there is 0.33
    assert record["sensitivity_0.95"] == 0.33
    assert record["chosen"] == "sensitivity_0.95" and record["target_sensitivity"] == 0.95
    assert record["split"] == "validation" and record["tiles"] == 40
    at = record["validation"]["sensitivity_0.95"]
    assert at == {"sensitivity": 0.95, "specificity": 11 / 20}  # negatives 0.02 ... 0.32 fall below 0.33
    # the highest such threshold: every distinct score above it misses the target
    assert all(sens < 0.95 for t, sens, _ in _brute_force(labels, probs) if t > 0.3351)  # 0.335 in float32 is 0.33500001


def test_youden_is_the_best_sensitivity_plus_specificity():
    labels, probs = _known()
    record = choose_thresholds(labels, probs)
    best_j = max(sens + spec - 1 for _, sens, spec in _brute_force(labels, probs))
    m = BinaryMetrics(labels, probs, record["youden"])
    assert m.sensitivity + m.specificity - 1 == pytest.approx(best_j)
    assert record["validation"]["youden"] == {"sensitivity": m.sensitivity, "specificity": m.specificity}
    assert record["validation"]["youden"]["specificity"] > record["validation"]["sensitivity_0.95"]["specificity"]


def test_perfectly_separated_classes_get_a_threshold_between_them():
    labels = np.r_[np.zeros(30), np.ones(10)].astype(int)
    probs = np.r_[np.full(30, 0.2), np.full(10, 0.9)].astype(np.float32)
    record = choose_thresholds(labels, probs, 0.99)
    assert sensitivity_key(0.99) == "sensitivity_0.99"
    assert record["sensitivity_0.99"] == record["youden"] == 0.5  # the shortest decimal in (0.2, 0.9]
    assert record["validation"]["youden"] == {"sensitivity": 1.0, "specificity": 1.0}


def test_a_target_of_one_keeps_every_positive():
    labels, probs = _known()
    record = choose_thresholds(labels, probs, 1.0)
    assert 0.29 < record["sensitivity_1"] <= 0.30 and record["validation"]["sensitivity_1"]["sensitivity"] == 1.0


@pytest.mark.parametrize("labels, probs", [
    ([0, 0, 0], [0.1, 0.2, 0.3]),       # no tumour tiles
    ([1, 1], [0.1, 0.9]),                # no non-tumour tiles
    ([0, 1], [0.1, float("nan")]),       # a broken network
    ([], []),
])
def test_no_threshold_without_both_classes_or_with_nan(labels, probs):
    assert choose_thresholds(labels, probs) is None


def test_bad_targets_are_refused():
    labels, probs = _known()
    for target in (0, -0.1, 1.2):
        with pytest.raises(ValueError):
            choose_thresholds(labels, probs, target)


def test_short_decimals_lie_in_their_interval_and_act_alike_in_float32():
    assert short_decimal(0.3987, 0.4231) == 0.4
    assert short_decimal(0.6, 0.6) == 0.6
    # 0.7 as float32 is 0.69999999: a float32 probability equal to that would be tumour in float32 and not in
    # float64, so 0.7 is passed over
    assert short_decimal(0.6, 0.75) != 0.7
    rng = np.random.default_rng(4)
    for _ in range(300):
        lo, hi = np.sort(rng.random(2).astype(np.float32)).astype(float)
        t = short_decimal(lo, hi)
        assert lo < t <= hi or lo == hi == t
        assert float(np.float32(t)) >= t  # see above


def test_the_recorded_figures_are_exactly_those_of_the_threshold_applied_to_float32_grids():
    rng = np.random.default_rng(0)
    for seed in range(20):
        labels = rng.integers(0, 2, 200)
        probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1).astype(np.float32)
        record = choose_thresholds(labels, probs, 0.9)
        for key in ("sensitivity_0.9", "youden"):
            t = record[key]
            assert float(format_threshold(t)) == t  # the text shown reads back as the value applied
            in_float32 = probs >= t  # numpy compares a float32 array with a Python float in float32
            np.testing.assert_array_equal(in_float32, probs.astype(np.float64) >= t)
            sens = in_float32[labels == 1].mean()
            spec = (~in_float32[labels == 0]).mean()
            assert record["validation"][key] == {"sensitivity": sens, "specificity": spec}
        assert record["validation"]["sensitivity_0.9"]["sensitivity"] >= 0.9
