"""Operating points chosen on validation scores and applied to test: positive iff score ≥ t.

Thresholds are observed scores (scikit-learn's `roc_curve` convention), not pROC's midpoints
between consecutive scores; both give the same (sensitivity, specificity) pairs. Where several
thresholds reach the same criterion, the largest is taken (the fewest positives). A finding
whose known validation labels lack a class has no threshold: NaN.
"""

from __future__ import annotations

import math

import numpy as np


def _curve(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(thresholds, sensitivity, 1 − specificity) at every observed score, thresholds
    decreasing; None when a class is missing."""
    from sklearn.metrics import roc_curve

    if targets.min() == targets.max():
        return None
    fpr, tpr, thresholds = roc_curve(targets, scores, drop_intermediate=False)
    return thresholds[1:], tpr[1:], fpr[1:]  # the first, +inf, marks nothing positive


def youden_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The score t maximising Youden's J = sensitivity + specificity − 1."""
    curve = _curve(np.asarray(scores, np.float64), np.asarray(targets))
    if curve is None:
        return math.nan
    thresholds, tpr, fpr = curve
    return float(thresholds[np.argmax(tpr - fpr)])  # argmax takes the first: the largest t


def _rate_curve(scores, targets, rate: float, name: str):
    if not 0 < rate <= 1:
        raise ValueError(f"{name} must be in (0, 1], not {rate}")
    return _curve(np.asarray(scores, np.float64), np.asarray(targets))


def sensitivity_threshold(scores: np.ndarray, targets: np.ndarray, sensitivity: float) -> float:
    """The largest score t whose sensitivity is at least `sensitivity` (0 < sensitivity ≤ 1)."""
    curve = _rate_curve(scores, targets, sensitivity, "sensitivity")
    if curve is None:
        return math.nan
    thresholds, tpr, _ = curve
    return float(thresholds[np.argmax(tpr >= sensitivity)])  # tpr rises as t falls; it reaches 1


def specificity_threshold(scores: np.ndarray, targets: np.ndarray, specificity: float) -> float:
    """The smallest score t whose specificity is at least `specificity` (0 < specificity ≤ 1): the
    most sensitive such point; +inf (nothing positive) when even the largest score is too low a bar."""
    curve = _rate_curve(scores, targets, specificity, "specificity")
    if curve is None:
        return math.nan
    thresholds, _, fpr = curve
    # fpr rises as t falls; the ε lets 3/30 count as 1 − 0.9, which is 0.0999… in floating point
    allowed = np.flatnonzero(fpr <= 1 - specificity + 1e-12)
    return float(thresholds[allowed[-1]]) if len(allowed) else math.inf


def per_finding(choose, scores: np.ndarray, targets: np.ndarray, known: np.ndarray, *args) -> np.ndarray:
    """(F,) `choose(scores, targets, *args)` of each finding over its known labels: e.g.
    `per_finding(youden_threshold, scores, targets, known)`."""
    return np.array([choose(scores[known[:, f], f], targets[known[:, f], f], *args) for f in range(scores.shape[1])])
