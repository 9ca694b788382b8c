"""AUROC as radiology papers report it, and the placements DeLong's variance is built from.

Higher score = positive, never an "auto" direction (pROC's median rule silently flips a model
worse than chance); a tie between a case and a control counts ½ (the Mann–Whitney statistic,
scikit-learn's `roc_auc_score`); float64 throughout. A finding whose known labels lack a class
has no AUROC: NaN, never 0 or ½, and a mean is over the findings that have one.

Placements (DeLong, 1988; in O(N log N) from one sort, as Sun & Xu, 2014, do with midranks): a
case's is the fraction of controls it outscores, a control's the fraction of cases that outscore
it, ties ½ each. The AUROC is the mean placement of the cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxrfast.eval.labelled_scores import finding_columns


@dataclass(frozen=True)
class Placements:
    """One model's placements on one finding's known images: `value[i]` is image i's placement
    (a case's or a control's, as `positive[i]` says), in the images' order."""

    value: np.ndarray  # float64 (N,)
    positive: np.ndarray  # bool (N,)

    @property
    def cases(self) -> np.ndarray:
        return self.value[self.positive]

    @property
    def controls(self) -> np.ndarray:
        return self.value[~self.positive]

    @property
    def auc(self) -> float:
        return float(self.cases.mean()) if 0 < self.positive.sum() < len(self.positive) else math.nan


def placements(scores: np.ndarray, positive: np.ndarray) -> Placements:
    """Placements of float64 `scores` (N,) against bool `positive` (N,), from one sort: within each
    block of tied scores, the cases and controls below it and in it are counted once."""
    count = len(scores)
    cases = int(positive.sum())
    controls = count - cases
    if not cases or not controls:
        return Placements(np.full(count, math.nan), positive)
    order = np.argsort(scores)  # any order within a tie: the block is counted whole
    ordered, case = scores[order], positive[order]
    first = np.empty(count, bool)  # the first position of each tie block
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], count)
    cases_before = np.concatenate(([0], np.cumsum(case)))
    cases_below, cases_in = cases_before[starts], cases_before[ends] - cases_before[starts]
    controls_below, controls_in = starts - cases_below, (ends - starts) - cases_in
    block = np.cumsum(first) - 1
    value = np.empty(count)
    value[order] = np.where(case, (controls_below + 0.5 * controls_in)[block] / controls,
                            1.0 - (cases_below + 0.5 * cases_in)[block] / cases)
    return Placements(value, positive)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of float64 `scores` (N,) against bool `positive` (N,); NaN without both classes."""
    return placements(np.asarray(scores, np.float64), np.asarray(positive, bool)).auc


def per_finding_auroc(scores: np.ndarray, targets: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """(F,) float64 AUROC of each column of (N, F) `scores` against `targets` (1 case, 0 control)
    over the rows `known` marks (by default those whose target is 0 or 1)."""
    return np.array([auroc(s, y) for (s,), y in finding_columns([scores], targets, known)])


def mean_defined(values: np.ndarray) -> float:
    """The mean over the values that are not NaN (NaN when none is)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else math.nan
