"""DeLong's variance of an AUROC and his paired test of two models on the same images, with
pROC's definitions (`ci.auc(method = "delong")`, `roc.test(paired = TRUE)`; checked against it).

From the placements (`cxrfast.eval.auroc`): the variance of an AUROC is S10/m + S01/n, S10 and
S01 the sample variances (denominators m − 1, n − 1) of the m cases' and n controls' placements;
with fewer than 2 cases or controls it is undefined (NaN), as in pROC. Its CI is Wald's on the
AUROC scale, clipped to [0, 1]. The paired test's Z = (AUC_a − AUC_b)/σ, σ² the same variance of
the placement differences (= L S Lᵀ of pROC's covariance); identical predictions give σ = 0 and
Z = 0, p = 1. p is two-sided 2Φ(−|Z|), "greater" (H1: AUC_a > AUC_b) Φ(−Z), "less" Φ(Z); the CI
of the difference is always the two-sided one, as pROC reports it. Each finding costs one sort
per model: O(N log N), against the O(m·n) comparisons of the definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from cxrfast.eval.auroc import placements
from cxrfast.eval.labelled_scores import finding_columns

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class AurocInterval:
    """Per finding: AUROC, DeLong variance, and the CI at `level`."""

    auc: np.ndarray
    variance: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float


@dataclass(frozen=True)
class DelongTest:
    """Per finding: each model's AUROC, their difference (a − b) with its σ and two-sided CI, Z and p."""

    auc_a: np.ndarray
    auc_b: np.ndarray
    difference: np.ndarray
    sigma: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    z: np.ndarray
    p: np.ndarray
    alternative: str
    level: float


def _variance(cases: np.ndarray, controls: np.ndarray) -> float:
    if len(cases) < 2 or len(controls) < 2:
        return math.nan
    return float(cases.var(ddof=1) / len(cases) + controls.var(ddof=1) / len(controls))


def _quantile(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    return float(ndtri(1 - (1 - level) / 2))


def delong_interval(scores, targets, known=None, level: float = 0.95,
                    findings: Sequence[str] | None = None) -> AurocInterval:
    """AUROC, DeLong variance and Wald CI (clipped to [0, 1]) of each finding (column)."""
    q = _quantile(level)
    auc, variance = [], []
    for (s,), y in finding_columns([scores], targets, known, findings):
        placed = placements(s, y)
        auc.append(placed.auc)
        variance.append(_variance(placed.cases, placed.controls))
    auc, variance = np.array(auc), np.array(variance)
    half = q * np.sqrt(variance)
    return AurocInterval(auc, variance, np.clip(auc - half, 0, 1), np.clip(auc + half, 0, 1), level)


def delong_test(scores_a, scores_b, targets, known=None, alternative: str = "two-sided", level: float = 0.95,
                findings: Sequence[str] | None = None) -> DelongTest:
    """DeLong's paired test of model a against model b on each finding (column)."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}, not {alternative!r}")
    q = _quantile(level)
    rows = []
    for (a, b), y in finding_columns([scores_a, scores_b], targets, known, findings):
        placed_a, placed_b = placements(a, y), placements(b, y)
        difference = placed_a.auc - placed_b.auc
        sigma = math.sqrt(_variance(placed_a.cases - placed_b.cases, placed_a.controls - placed_b.controls))
        if sigma > 0 or math.isnan(sigma):
            z = difference / sigma
        else:  # no variance: identical placements (Z = 0, p = 1, as pROC), or a difference without noise
            z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
        rows.append((placed_a.auc, placed_b.auc, difference, sigma, z))
    auc_a, auc_b, difference, sigma, z = np.array(rows, dtype=np.float64).reshape(-1, 5).T
    if alternative == "two-sided":
        p = np.minimum(1.0, 2 * ndtr(-np.abs(z)))
    else:
        p = ndtr(-z) if alternative == "greater" else ndtr(z)
    return DelongTest(auc_a, auc_b, difference, sigma, difference - q * sigma, difference + q * sigma, z, p,
                      alternative, level)
