"""Per-image Dice of binary masks, with MONAI's conventions stated: Dice = 2|Y ∧ Ŷ| / (|Y| + |Ŷ|)
per image (a single foreground channel: `DiceMetric(include_background=True)` on one channel is
the same), and an image whose ground truth is empty has no Dice — NaN, reported, and left out of
the mean (MONAI's `ignore_empty=True`), never 0 or 1. Where no image has a Dice the mean is NaN,
not MONAI's 0."""

from __future__ import annotations

import math

import numpy as np


def per_image_dice(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) float64 Dice of (N, ...) boolean predictions against (N, ...) boolean ground truth."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    if predicted.shape != truth.shape or predicted.ndim < 2:
        raise ValueError(f"predicted {predicted.shape} and truth {truth.shape} must be one (N, ...) shape")
    predicted, truth = predicted.reshape(len(predicted), -1), truth.reshape(len(truth), -1)
    overlap = (predicted & truth).sum(1)
    total = predicted.sum(1) + truth.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2 * overlap / total
    return np.where(truth.any(1), dice, math.nan)
