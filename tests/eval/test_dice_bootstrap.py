"""Mean Dice with a bootstrap CI against brute-force replicates (the images repeated as drawn),
patient clusters, and the paired comparison of two models, whose p is never 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrfast.errors import DataError
from cxrfast.eval.dice_bootstrap import bootstrap_dice


def _dice(seed, n=120):
    rng = np.random.default_rng(seed)
    a = np.clip(rng.normal(0.9, 0.05, n), 0, 1)
    b = np.clip(a - rng.normal(0.02, 0.03, n), 0, 1)
    a[[5, 40]] = b[[5, 40]] = math.nan  # empty ground truths
    return a, b


def test_the_interval_is_the_percentiles_of_the_resampled_means():
    a, _ = _dice(0)
    result = bootstrap_dice(a, replicates=300, seed=4, level=0.9)
    scored = a[~np.isnan(a)]
    rng = np.random.default_rng(np.random.SeedSequence(4))
    draws = rng.integers(0, len(scored), size=(300, len(scored)))
    brute = np.array([scored[d].mean() for d in draws])
    assert (result.mean, result.images) == (pytest.approx(scored.mean()), 118)
    np.testing.assert_allclose([result.lower, result.upper], np.quantile(brute, [0.05, 0.95]), atol=1e-12)


def test_patients_are_resampled_whole():
    a, _ = _dice(1)
    patients = [f"P{k // 3}" for k in range(len(a))]  # three images each
    result = bootstrap_dice(a, patients=patients, replicates=200, seed=0)
    scored = ~np.isnan(a)
    kept = [p for p, s in zip(patients, scored) if s]
    names, units = np.unique(kept, return_inverse=True)
    draws = np.random.default_rng(np.random.SeedSequence(0)).integers(0, len(names), size=(200, len(names)))
    brute = [np.concatenate([a[scored][units == u] for u in d]).mean() for d in draws]
    np.testing.assert_allclose([result.lower, result.upper], np.quantile(brute, [0.025, 0.975]), atol=1e-12)


def test_the_paired_comparison():
    a, b = _dice(2)
    result = bootstrap_dice(a, b, replicates=199, seed=1)
    assert result.difference == pytest.approx(np.nanmean(a) - np.nanmean(b))
    assert result.difference_lower < result.difference < result.difference_upper
    assert result.p >= 2 / 200  # never 0, however clear the difference
    same = bootstrap_dice(a, a.copy(), replicates=50)
    assert (same.difference, same.p) == (0.0, 1.0)
    b[7] = math.nan
    with pytest.raises(DataError, match="images 7 have a Dice for one model only"):
        bootstrap_dice(a, b)
    empty = bootstrap_dice(np.full(3, math.nan))
    assert empty.images == 0 and math.isnan(empty.mean)
