"""core.metrics against hand-computed values."""

import numpy as np
import pytest

from core.metrics import BinaryMetrics, auc_score, confusion, roc_curve


def test_confusion_counts():
    c = confusion([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0])
    assert (c.tp, c.fp, c.tn, c.fn, c.total) == (2, 1, 2, 1, 6)


def test_binary_metrics_hand_computed():
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    probs = [0.9, 0.8, 0.4, 0.6, 0.7, 0.2, 0.1, 0.3, 0.35, 0.05]
    m = BinaryMetrics(labels, probs, threshold=0.5)
    # tp: .9 .8 .6 ; fn: .4 ; fp: .7 ; tn: 5
    assert (m.counts.tp, m.counts.fn, m.counts.fp, m.counts.tn) == (3, 1, 1, 5)
    assert m.sensitivity == pytest.approx(3 / 4)
    assert m.specificity == pytest.approx(5 / 6)
    assert m.ppv == pytest.approx(3 / 4)
    assert m.npv == pytest.approx(5 / 6)
    assert m.accuracy == pytest.approx(8 / 10)
    assert m.f1 == pytest.approx(6 / 8)
    # Pairs (pos, neg) with pos > neg: .9 and .8 beat all 6 = 12; .6 beats 5 (not .7); .4 beats 5 -> 22/24
    assert m.auc == pytest.approx(22 / 24)
    assert m.auc_reason is None


def test_auc_ties_count_half():
    auc, _ = auc_score([1, 0], [0.5, 0.5])
    assert auc == pytest.approx(0.5)
    auc, _ = auc_score([1, 1, 0, 0], [0.7, 0.5, 0.5, 0.1])
    assert auc == pytest.approx((2 + 0.5 + 1) / 4)  # .7 beats both; .5 ties .5, beats .1


def test_auc_matches_brute_force_pairwise():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    probs = np.round(rng.random(300), 2)  # rounding makes many ties
    pos, neg = probs[labels == 1], probs[labels == 0]
    diff = pos[:, None] - neg[None, :]
    brute = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert auc_score(labels, probs)[0] == pytest.approx(brute, abs=1e-12)
    # The trapezoid under the ROC points is the same number.
    fpr, tpr, _ = roc_curve(labels, probs)
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(brute, abs=1e-12)


def test_one_class_missing_is_nan_safe():
    m = BinaryMetrics([0, 0, 0], [0.1, 0.6, 0.2])
    assert m.auc is None and "no positive" in m.auc_reason
    assert m.sensitivity is None and m.ppv == 0.0
    assert m.specificity == pytest.approx(2 / 3)
    assert m.threshold_for_sensitivity(0.9) is None
    assert BinaryMetrics([1, 1], [0.1, 0.9]).auc is None


def test_roc_points_and_threshold_for_sensitivity():
    labels = [1, 1, 0, 1, 0]
    probs = [0.9, 0.7, 0.6, 0.4, 0.2]
    fpr, tpr, thr = roc_curve(labels, probs)
    assert np.allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert np.allclose(fpr, [0, 0, 0, 0.5, 0.5, 1])
    assert thr[0] == np.inf
    m = BinaryMetrics(labels, probs)
    assert m.threshold_for_sensitivity(1.0) == pytest.approx(0.4)
    assert m.threshold_for_sensitivity(0.6) == pytest.approx(0.7)
    assert BinaryMetrics(labels, probs, threshold=0.4).sensitivity == 1.0


def test_confusion_table_layout():
    m = BinaryMetrics([1, 1, 1, 0, 0], [0.9, 0.8, 0.1, 0.7, 0.2])
    lines = m.confusion_table_text().splitlines()
    assert "True diagnosis" in lines[0]
    assert lines[1].split() == ["Negative", "Positive", "Total"]
    assert lines[2].split() == ["Screening", "test", "Negative", "1", "1", "2"]
    assert lines[3].split() == ["Positive", "1", "2", "3"]
    assert lines[4].split() == ["Total", "2", "3", "5"]
