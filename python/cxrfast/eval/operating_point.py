"""What a model does at one threshold: positive iff score ≥ t (the convention of every threshold
cxrfast chooses, `cxrfast.eval.thresholds`), its confusion counts and the rates papers report. A
rate whose denominator is 0 (PPV with nothing called positive) is NaN, never padded with an ε to
look like 0, as vit-med's confusion-matrix code does."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

RATES = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.fp + self.tn + self.fn)

    @property
    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), **{rate: getattr(self, rate) for rate in RATES}}


def operating_point(scores: np.ndarray, positive: np.ndarray, threshold: float) -> OperatingPoint:
    """Counts of float `scores` (N,) against bool `positive` (N,) at `threshold` (NaN: no threshold
    was chosen, and every count is 0 so every rate is NaN)."""
    if math.isnan(threshold):
        return OperatingPoint(threshold, 0, 0, 0, 0)
    called = np.asarray(scores) >= threshold
    positive = np.asarray(positive, bool)
    tp, fp = int((called & positive).sum()), int((called & ~positive).sum())
    return OperatingPoint(float(threshold), tp, fp, int((~positive).sum()) - fp, int(positive.sum()) - tp)
