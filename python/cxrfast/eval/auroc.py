"""Per-finding AUROC over the known labels, as model selection and the run's summary need it:
higher score = positive, tied scores count ½ (scikit-learn's `roc_auc_score`, float64). A
finding whose known labels lack a class has no AUROC: NaN, never 0 or ½, and the mean is over
the findings that have one."""

from __future__ import annotations

import math

import numpy as np


def per_finding_auroc(scores: np.ndarray, targets: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(F,) float64 AUROC of each column of (N, F) `scores` against 0/1 `targets` where `known`."""
    from sklearn.metrics import roc_auc_score

    scores, targets, known = np.asarray(scores, np.float64), np.asarray(targets), np.asarray(known, bool)
    if not scores.shape == targets.shape == known.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape}, targets {targets.shape} and known {known.shape} must be one (N, F)")
    result = np.full(scores.shape[1], math.nan)
    for f in range(scores.shape[1]):
        y = targets[known[:, f], f]
        if len(np.unique(y)) == 2:
            result[f] = roc_auc_score(y, scores[known[:, f], f])
    return result


def mean_defined(values: np.ndarray) -> float:
    """The mean over the values that are not NaN (NaN when none is)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else math.nan
