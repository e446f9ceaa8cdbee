"""Screening-test metrics for a binary tumour classifier (no MXNet).

Positive means "tumour". Probabilities are the model's tumour probability; a tile is called positive
when its probability is at or above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary confusion matrix."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def total(self) -> int:
        """Number of cases."""
        return self.tp + self.fp + self.tn + self.fn


def confusion(y_true, y_pred) -> Confusion:
    """Count true/false positives/negatives.

    Parameters
    ----------
    y_true, y_pred : array-like of {0, 1} or bool
        True diagnosis and screening-test result, 1 = positive (tumour).

    Returns
    -------
    Confusion
    """
    t = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    return Confusion(
        tp=int(np.sum(t & p)), fp=int(np.sum(~t & p)), tn=int(np.sum(~t & ~p)), fn=int(np.sum(t & ~p))
    )


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def auc_score(y_true, scores) -> tuple[float | None, str | None]:
    """Area under the ROC curve by the rank (Mann-Whitney) statistic; ties count one half.

    Returns
    -------
    (auc, reason) : tuple
        ``auc`` is None when a class is missing, with ``reason`` saying why.
    """
    t = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if np.isnan(s).any():
        return None, "some probabilities are NaN"
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        missing = "positive (tumour)" if n_pos == 0 else "negative (non-tumour)"
        return None, f"AUC is undefined: no {missing} cases"
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average rank of each run of tied scores (1-based).
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg)), None


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points, one per distinct threshold, from (0, 0) to (1, 1).

    Returns
    -------
    fpr, tpr, thresholds : ndarray
        ``thresholds[i]`` calls positive every score ``>= thresholds[i]``; the first is ``+inf``.
    """
    t = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last_of_run = np.r_[np.diff(s_sorted) != 0, True] if s.size else np.zeros(0, bool)
    tps = np.cumsum(t_sorted)[last_of_run]
    fps = np.cumsum(~t_sorted)[last_of_run]
    n_pos, n_neg = max(int(t.sum()), 1), max(int((~t).sum()), 1)
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    return fpr, tpr, thresholds


@dataclass
class BinaryMetrics:
    """Metrics of a binary screening test at one threshold.

    Parameters
    ----------
    labels : array-like of {0, 1}
        True diagnosis, 1 = tumour.
    probabilities : array-like of float
        Tumour probability per case.
    threshold : float
        Cases with probability ``>= threshold`` are called positive.

    Attributes
    ----------
    counts : Confusion
    sensitivity, specificity, ppv, npv, accuracy, f1 : float or None
        None where the denominator is zero.
    auc : float or None
    auc_reason : str or None
        Why ``auc`` is None.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    threshold: float = 0.5
    counts: Confusion = field(init=False)
    auc: float | None = field(init=False)
    auc_reason: str | None = field(init=False)

    def __post_init__(self):
        self.labels = np.asarray(self.labels).astype(np.int64).ravel()
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64).ravel()
        if self.labels.shape != self.probabilities.shape:
            raise ValueError(
                f"{self.labels.size} labels but {self.probabilities.size} probabilities"
            )
        self.counts = confusion(self.labels, self.probabilities >= self.threshold)
        self.auc, self.auc_reason = auc_score(self.labels, self.probabilities)

    @property
    def sensitivity(self) -> float | None:
        return _ratio(self.counts.tp, self.counts.tp + self.counts.fn)

    @property
    def specificity(self) -> float | None:
        return _ratio(self.counts.tn, self.counts.tn + self.counts.fp)

    @property
    def ppv(self) -> float | None:
        return _ratio(self.counts.tp, self.counts.tp + self.counts.fp)

    @property
    def npv(self) -> float | None:
        return _ratio(self.counts.tn, self.counts.tn + self.counts.fn)

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.counts.tp + self.counts.tn, self.counts.total)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.counts.tp, 2 * self.counts.tp + self.counts.fp + self.counts.fn)

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ROC curve points (fpr, tpr, thresholds); see `roc_curve`."""
        return roc_curve(self.labels, self.probabilities)

    def threshold_for_sensitivity(self, target: float) -> float | None:
        """Highest threshold whose sensitivity is at least ``target``; None without positives."""
        if not np.any(self.labels == 1):
            return None
        fpr, tpr, thresholds = self.roc()
        ok = np.nonzero(tpr >= target - 1e-12)[0]
        return float(thresholds[ok[0]])

    def as_dict(self) -> dict:
        """Plain values for JSON (model bundles, reports)."""
        return {
            "threshold": self.threshold,
            "n": self.counts.total,
            "tp": self.counts.tp, "fp": self.counts.fp, "tn": self.counts.tn, "fn": self.counts.fn,
            "sensitivity": self.sensitivity, "specificity": self.specificity,
            "ppv": self.ppv, "npv": self.npv, "accuracy": self.accuracy, "f1": self.f1,
            "auc": self.auc, "auc_reason": self.auc_reason,
        }

    def confusion_table_text(self) -> str:
        """The original study's 2x2 table: screening test (rows) against true diagnosis (columns)."""
        c = self.counts
        rows = [
            ("", "", "True diagnosis", "", ""),
            ("", "", "Negative", "Positive", "Total"),
            ("Screening test", "Negative", c.tn, c.fn, c.tn + c.fn),
            ("", "Positive", c.fp, c.tp, c.fp + c.tp),
            ("", "Total", c.tn + c.fp, c.fn + c.tp, c.total),
        ]
        cells = [[str(v) for v in r] for r in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(5)]
        lines = []
        for r in cells:
            left = "  ".join(r[i].ljust(widths[i]) for i in range(2))
            right = "  ".join(r[i].rjust(widths[i]) for i in range(2, 5))
            lines.append(f"{left}  {right}".rstrip())
        return "\n".join(lines)
