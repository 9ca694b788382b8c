"""The mean Dice of a segmentation test set with a bootstrap CI over its images, and the paired
comparison of two models on them: replicates of the images (or of patients, each with all its
images, when one has several), drawn once from the seed and shared by both models; percentile
CIs; the paired p-value as `cxrfast.eval.bootstrap` defines it, never 0. An image without a Dice
(empty ground truth, NaN) is left out of every mean, and must be NaN for both models alike."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrfast.errors import DataError
from cxrfast.eval.bootstrap import paired_p
from cxrfast.eval.resamples import image_units


@dataclass(frozen=True)
class DiceBootstrap:
    """Model a's mean Dice with its CI; with model b: the difference a − b, its CI and p."""

    mean: float
    lower: float
    upper: float
    images: int  # with a Dice
    difference: float = math.nan
    difference_lower: float = math.nan
    difference_upper: float = math.nan
    p: float = math.nan
    alternative: str = "two-sided"
    level: float = 0.95


def _replicate_means(dice: np.ndarray, units: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(B,) mean Dice of each replicate: each image counted as often as its unit was drawn."""
    unit_count = int(units.max()) + 1
    sums = np.bincount(units, weights=dice, minlength=unit_count)
    sizes = np.bincount(units, minlength=unit_count).astype(np.float64)
    counts = np.stack([np.bincount(row, minlength=unit_count) for row in draws]).astype(np.float64)
    return (counts @ sums) / (counts @ sizes)


def bootstrap_dice(dice_a, dice_b=None, patients: Sequence[str] | None = None, replicates: int = 2000,
                   seed: int = 0, level: float = 0.95, alternative: str = "two-sided") -> DiceBootstrap:
    """Mean Dice of per-image `dice_a` (N,) with its CI, and its paired comparison with `dice_b`."""
    dice_a = np.asarray(dice_a, np.float64)
    scored = ~np.isnan(dice_a)
    if dice_b is not None:
        dice_b = np.asarray(dice_b, np.float64)
        if dice_b.shape != dice_a.shape:
            raise ValueError(f"Dice of {dice_a.shape} and {dice_b.shape} images; compare models on the same images")
        differ = np.flatnonzero(scored != ~np.isnan(dice_b))
        if len(differ):
            raise DataError(f"images {', '.join(map(str, differ[:5]))} have a Dice for one model only; an empty "
                            "ground truth has none for both")
    if not scored.any():
        return DiceBootstrap(math.nan, math.nan, math.nan, 0, alternative=alternative, level=level)
    units, _ = image_units(None if patients is None else [p for p, s in zip(patients, scored) if s], int(scored.sum()),
                           None)
    _, units = np.unique(units, return_inverse=True)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    draws = rng.integers(0, units.max() + 1, size=(replicates, units.max() + 1))
    quantiles = [(1 - level) / 2, (1 + level) / 2]
    means_a = _replicate_means(dice_a[scored], units, draws)
    lower, upper = np.quantile(means_a, quantiles)
    result = DiceBootstrap(float(dice_a[scored].mean()), float(lower), float(upper), int(scored.sum()),
                           alternative=alternative, level=level)
    if dice_b is None:
        return result
    delta = means_a - _replicate_means(dice_b[scored], units, draws)
    d_lower, d_upper = np.quantile(delta, quantiles)
    return DiceBootstrap(result.mean, result.lower, result.upper, result.images,
                         float(dice_a[scored].mean() - dice_b[scored].mean()), float(d_lower), float(d_upper),
                         float(paired_p(delta[:, None], alternative)[0]), alternative, level)
