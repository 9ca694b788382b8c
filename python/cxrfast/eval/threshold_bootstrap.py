"""Percentile CIs of the average precision and of the rates at an operating point (accuracy, F1,
sensitivity...), on the very replicates the AUROC's CI uses (`cxrfast.eval.resamples`: each
finding's, stratified by its class). In a replicate image i weighs as often as its unit is
drawn, so its AP is scikit-learn's with those sample weights and each rate a ratio of weighted
confusion counts at the fixed threshold (chosen on validation, not redrawn). Replicates where a
rate is undefined (nothing called positive, for PPV) are left out of that rate's percentiles.
"""

from __future__ import annotations

import math

import numpy as np

from cxrfast.eval.operating_point import RATES, OperatingPoint
from cxrfast.eval.resamples import Resamples


def replicate_weights(resamples: Resamples, f: int, units: np.ndarray):
    """(b, N) chunks of each image's weight (its unit's draws) in finding f's replicates, for the
    images whose units are `units`."""
    pools = resamples.finding_pools(f)
    for rows in resamples.chunks():
        draws = resamples.draws(pools, rows)
        count = resamples.unit_count
        flat = (draws + np.arange(len(draws))[:, None] * count).ravel()
        counts = np.bincount(flat, minlength=len(draws) * count).reshape(len(draws), count)
        yield counts[:, units].astype(np.float64)


def weighted_average_precision(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(b,) scikit-learn's average precision of `scores` (N,) against bool `positive` (N,) under
    each row of sample `weights` (b, N): Σ over distinct thresholds, from the highest, of the
    recall gained times the precision there."""
    order = np.argsort(-scores, kind="stable")
    ends = np.r_[np.flatnonzero(np.diff(scores[order])), len(order) - 1]  # the last image of each tied score
    w = weights[:, order]
    tp = np.cumsum(w * positive[order], axis=1)[:, ends]
    called = np.cumsum(w, axis=1)[:, ends]
    precision = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
    total = tp[:, -1:]
    recall = np.divide(tp, total, out=np.zeros_like(tp), where=total > 0)
    gained = np.diff(recall, axis=1, prepend=0.0)
    return np.where(total[:, 0] > 0, (gained * precision).sum(1), math.nan)


def _interval(values: np.ndarray, level: float) -> list[float]:
    kept = values[~np.isnan(values)]
    if not kept.size:
        return [math.nan, math.nan]
    return [float(q) for q in np.quantile(kept, [(1 - level) / 2, (1 + level) / 2])]


def average_precision_interval(scores, positive, units, resamples: Resamples, f: int, level: float) -> list[float]:
    """The AP's percentile CI over finding f's replicates (NaN without both classes)."""
    if not resamples.finding_pools(f):
        return [math.nan, math.nan]
    values = np.concatenate([weighted_average_precision(scores, positive, w)
                             for w in replicate_weights(resamples, f, units)])
    return _interval(values, level)


def rates_interval(scores, positive, threshold: float, units, resamples: Resamples, f: int,
                   level: float) -> dict[str, list[float]]:
    """Each rate's percentile CI at `threshold` over finding f's replicates (NaN for a NaN threshold)."""
    if math.isnan(threshold) or not resamples.finding_pools(f):
        return {rate: [math.nan, math.nan] for rate in RATES}
    called = scores >= threshold
    kinds = np.stack([called & positive, called & ~positive, ~called & ~positive, ~called & positive]).T
    counts = np.concatenate([w @ kinds for w in replicate_weights(resamples, f, units)])  # (B, 4): tp, fp, tn, fn
    points = [OperatingPoint(threshold, *(int(round(c)) for c in row)) for row in counts]
    return {rate: _interval(np.array([getattr(p, rate) for p in points], np.float64), level) for rate in RATES}
