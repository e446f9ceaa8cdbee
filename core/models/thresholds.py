"""Operating thresholds chosen on validation tiles: one at a target sensitivity, and Youden's J (no MXNet).

A tile is called tumour when its probability is at or above the threshold. Every threshold inside the
interval between two neighbouring distinct validation scores, ``(lower, upper]``, calls the validation
tiles the same way; of those the shortest decimal nearest the middle is taken (0.4 rather than
0.40000001), so the value a user reads is exactly the value applied, and it does not sit on a tile's own
score. The sensitivity and specificity recorded for each threshold are recomputed at that value.
"""

from __future__ import annotations

import numpy as np

from core.metrics import BinaryMetrics, roc_curve

DEFAULT_TARGET_SENSITIVITY = 0.95
#: applied when a model records no threshold
DEFAULT_THRESHOLD = 0.5
YOUDEN = "youden"


def sensitivity_key(target: float) -> str:
    """The ``thresholds`` key of the target-sensitivity threshold: ``"sensitivity_0.95"``."""
    return f"sensitivity_{target:g}"


def format_threshold(value: float) -> str:
    """``value`` as text that reads back as the same float (``0.4``, ``0.4235``): never rounded."""
    return repr(float(value))


def short_decimal(lower: float, upper: float) -> float:
    """The decimal with fewest digits in ``(lower, upper]``, nearest the middle; ``upper`` if none is shorter.

    Grids hold float32 probabilities: the value returned compares with every float32 probability the same
    way in float32 and in float64 (see `_same_in_float32`).
    """
    lower, upper = float(lower), float(upper)
    if not lower < upper:
        return upper
    middle = (lower + upper) / 2
    for digits in range(1, 16):
        scale = 10 ** digits
        k = round(middle * scale)
        for candidate_k in sorted({k - 1, k, k + 1}, key=lambda c: abs(c / scale - middle)):
            value = round(candidate_k / scale, digits)
            if lower < value <= upper and _same_in_float32(value, lower, upper):
                return value
    return upper


def _same_in_float32(value: float, lower: float, upper: float) -> bool:
    """True when float32 and float64 comparisons with ``value`` agree for every float32 probability.

    numpy compares a float32 array with a Python float in float32, so the threshold acts as
    ``float32(value)``: that must stay in ``(lower, upper]`` and not fall below ``value`` (a probability
    equal to it would be tumour in float32 and not in float64).
    """
    as32 = float(np.float32(value))
    return lower < as32 <= upper and as32 >= value


def choose_thresholds(labels, probabilities, target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
                      split: str = "validation") -> dict | None:
    """The ``thresholds`` record of ``model.json`` from validation labels and tumour probabilities.

    Parameters
    ----------
    labels : array-like of {0, 1}
        1 = tumour.
    probabilities : array-like of float
        Tumour probability per tile.
    target_sensitivity : float
        In (0, 1]: the threshold is the highest one whose validation sensitivity is at least this.
    split : str
        Where the tiles came from, recorded.

    Returns
    -------
    dict or None
        ``{"sensitivity_0.95": t, "youden": t, "chosen": "sensitivity_0.95", "target_sensitivity": 0.95,
        "split": "validation", "tiles": n, "validation": {key: {"sensitivity": s, "specificity": sp}}}``;
        None when a class is missing or a probability is not finite (no threshold can be chosen).
    """
    if not 0 < target_sensitivity <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target_sensitivity}")
    labels = np.asarray(labels).astype(np.int64).ravel()
    probs = np.asarray(probabilities, np.float64).ravel()
    if labels.shape != probs.shape:
        raise ValueError(f"{labels.size} labels but {probs.size} probabilities")
    if labels.size == 0 or not np.all(np.isfinite(probs)) or labels.min() == labels.max():
        return None
    fpr, tpr, cuts = roc_curve(labels, probs)
    # interval of cut i (i >= 1): (next lower distinct score, cuts[i]]; below the lowest score, down to 0
    lowers = np.r_[cuts[2:], 0.0 if cuts[-1] > 0 else -1e-9]

    def at(i: int) -> float:
        return short_decimal(lowers[i - 1], min(float(cuts[i]), 1.0))

    reach = np.nonzero(tpr[1:] >= target_sensitivity - 1e-12)[0]
    i_sens = int(reach[0]) + 1
    j = tpr[1:] - fpr[1:]
    i_youden = int(np.argmax(j)) + 1  # the highest threshold of the best J
    key = sensitivity_key(target_sensitivity)
    chosen = {key: at(i_sens), YOUDEN: at(i_youden)}
    record = {**chosen, "chosen": key, "target_sensitivity": float(target_sensitivity), "split": split,
              "tiles": int(labels.size), "validation": {}}
    for name, threshold in chosen.items():
        m = BinaryMetrics(labels, probs, threshold)
        record["validation"][name] = {"sensitivity": m.sensitivity, "specificity": m.specificity}
    return record


__all__ = ["choose_thresholds", "format_threshold", "short_decimal", "sensitivity_key", "DEFAULT_TARGET_SENSITIVITY", "DEFAULT_THRESHOLD", "YOUDEN"]
