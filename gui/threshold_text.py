"""How the window writes a threshold: with the digits that tell it apart from its neighbours (one rule).

A threshold chosen for a target sensitivity can be 0.0033 or 0.99953; written to a fixed three decimals
they read 0.003 and 1.000, and a user typing back what is shown applies another threshold. The Prediction
panel's box, the heatmap legend and the Evaluation panel all write thresholds through `threshold_text`.
"""

from __future__ import annotations

import math

#: At least this many decimals; more where the value (or its distance to 1) needs them for two significant digits.
MIN_DECIMALS = 4
MAX_DECIMALS = 6


def threshold_decimals(value: float) -> int:
    """Decimals that show ``value`` with two significant digits, and its distance to 1 likewise (4 to 6)."""
    decimals = MIN_DECIMALS
    for part in (value, 1.0 - value):
        if 0 < part < 1:
            decimals = max(decimals, 1 - math.floor(math.log10(part)))
    return min(decimals, MAX_DECIMALS)


def threshold_text(value: float) -> str:
    """``0.5``, ``0.4371``, ``0.0033``, ``0.99953``: `threshold_decimals` decimals, trailing zeros dropped."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.{threshold_decimals(value)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
