"""Bootstrap confidence intervals and paired tests of AUROC, per finding and for the mean over
findings, on replicates drawn once (`cxrfast.eval.resamples`) and shared by the models compared.

CIs are percentiles of the replicates' AUROCs (numpy's default interpolation, R's type 7, as pROC
uses), around the AUROC of the whole test set. The paired test looks at Δ_b = AUC_a − AUC_b per
replicate; its p-value counts the replicates that contradict the alternative and can never be 0:
"greater" (H1: a better) (1 + #{Δ_b ≤ 0}) / (B + 1), "less" (1 + #{Δ_b ≥ 0}) / (B + 1), two-sided
twice the smaller of the two, at most 1. `p_vitmed` is vit-med's (study c's) ratio, the share of
replicates in which a is not better, #{Δ_b ≤ 0} / B: one-sided, and 0 when a always wins, which
is why it is not the default; it is there to reproduce their tables.

Each replicate only reweights the images, so the AUROC of all of them comes from one sort per
finding and model and a weighted walk per replicate (`cxrfast._C.bootstrap_auroc`, C++ and
OpenMP): the same Mann–Whitney count scikit-learn computes on the resampled arrays, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrfast.eval.auroc import auroc
from cxrfast.eval.labelled_scores import finding_columns, known_rows
from cxrfast.eval.resamples import Resamples

ALTERNATIVES = ("two-sided", "greater", "less")


def replicate_auroc(models: Sequence[np.ndarray], positive: np.ndarray, units: np.ndarray, draws: np.ndarray,
                    unit_count: int) -> np.ndarray:
    """(B, K) AUROC of each of K models' (N,) scores against bool `positive` (N,) in each replicate
    of `draws` (B, M) into `unit_count` units, image i weighing as often as its unit `units[i]` is drawn."""
    from cxrfast import _C

    orders = np.stack([np.argsort(np.asarray(s, np.float64)) for s in models]).astype(np.int64)
    first = np.ones(orders.shape, np.uint8)
    for k, s in enumerate(models):
        ordered = np.asarray(s, np.float64)[orders[k]]
        first[k, 1:] = ordered[1:] != ordered[:-1]
    out = np.empty((draws.shape[0], len(models)))
    _C.bootstrap_auroc(np.ascontiguousarray(draws, np.int64), np.ascontiguousarray(units, np.int64), unit_count,
                       orders, first, np.ascontiguousarray(positive, np.uint8), out)
    return out


def _percentiles(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    if not values.shape[0]:
        nan = np.full(values.shape[1:], math.nan)
        return nan, nan.copy()
    lower, upper = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lower, upper


@dataclass(frozen=True)
class Replicated:
    """Per finding and for the mean over the findings that have an AUROC."""

    finding: np.ndarray  # (B, F) per-finding replicates (stratified)
    mean: np.ndarray  # (B,) mean over the defined findings on the joint replicates


def _replicate(models: Sequence, targets, resamples: Resamples, known) -> tuple[list[np.ndarray], list[Replicated]]:
    """Each model's whole-set AUROCs and its replicates."""
    columns = finding_columns(models, targets, known, resamples.findings)
    rows = known_rows(targets, known)
    if len(resamples.units) != len(rows):
        raise ValueError(f"replicates of {len(resamples.units)} images for {len(rows)}")
    B, K = resamples.replicates, len(models)
    whole = np.full((K, len(columns)), math.nan)
    finding = np.full((K, B, len(columns)), math.nan)
    joint = np.full((K, B, len(columns)), math.nan)
    for f, (scores, positive) in enumerate(columns):
        whole[:, f] = [auroc(s, positive) for s in scores]
        if math.isnan(whole[0, f]):
            continue
        units = resamples.units[rows[:, f]]
        finding[:, :, f] = replicate_auroc(scores, positive, units, resamples.finding_draws[f],
                                           resamples.unit_count).T
        joint[:, :, f] = replicate_auroc(scores, positive, units, resamples.joint_draws, resamples.unit_count).T
    defined = ~np.isnan(whole[0])
    replicated = [Replicated(finding[k], joint[k][:, defined].mean(axis=1) if defined.any() else np.full(B, math.nan))
                  for k in range(K)]
    return list(whole), replicated


@dataclass(frozen=True)
class BootstrapInterval:
    """Per finding: whole-set AUROC and percentile CI; and the same for the mean over the findings
    that have an AUROC (`defined`)."""

    auc: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    mean: float
    mean_lower: float
    mean_upper: float
    defined: np.ndarray
    level: float
    replicates: Replicated


def bootstrap_interval(scores, targets, resamples: Resamples, known=None, level: float = 0.95) -> BootstrapInterval:
    """Percentile CIs of one model's AUROC per finding and of its mean AUROC."""
    (whole,), (replicated,) = _replicate([scores], targets, resamples, known)
    lower, upper = _percentiles(replicated.finding, level)
    defined = ~np.isnan(whole)
    mean_lower, mean_upper = _percentiles(replicated.mean[:, None], level)
    return BootstrapInterval(whole, np.where(defined, lower, math.nan), np.where(defined, upper, math.nan),
                             float(whole[defined].mean()) if defined.any() else math.nan,
                             float(mean_lower[0]), float(mean_upper[0]), defined, level, replicated)


@dataclass(frozen=True)
class BootstrapTest:
    """Per finding and for the mean AUROC: the whole-set difference a − b, its percentile CI, and p."""

    difference: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    p: np.ndarray
    p_vitmed: np.ndarray
    mean_difference: float
    mean_lower: float
    mean_upper: float
    mean_p: float
    mean_p_vitmed: float
    alternative: str
    level: float


def paired_p(differences: np.ndarray, alternative: str) -> np.ndarray:
    """The p-value of each column of replicate differences (B, F), as this module's docstring defines it."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}, not {alternative!r}")
    count = differences.shape[0]
    greater = (1 + (differences <= 0).sum(axis=0)) / (count + 1)
    less = (1 + (differences >= 0).sum(axis=0)) / (count + 1)
    if alternative == "greater":
        return greater
    if alternative == "less":
        return less
    return np.minimum(1.0, 2 * np.minimum(greater, less))


def bootstrap_test(scores_a, scores_b, targets, resamples: Resamples, known=None, alternative: str = "two-sided",
                   level: float = 0.95) -> BootstrapTest:
    """The paired bootstrap comparison of model a with model b on the same replicates."""
    (whole_a, whole_b), (rep_a, rep_b) = _replicate([scores_a, scores_b], targets, resamples, known)
    defined = ~np.isnan(whole_a)
    delta, mean_delta = rep_a.finding - rep_b.finding, rep_a.mean - rep_b.mean
    lower, upper = _percentiles(delta, level)
    mean_lower, mean_upper = _percentiles(mean_delta[:, None], level)
    p = np.where(defined, paired_p(delta, alternative), math.nan)
    vitmed = np.where(defined, (delta <= 0).mean(axis=0), math.nan)
    return BootstrapTest(whole_a - whole_b, np.where(defined, lower, math.nan), np.where(defined, upper, math.nan),
                         p, vitmed,
                         float((whole_a - whole_b)[defined].mean()) if defined.any() else math.nan,
                         float(mean_lower[0]), float(mean_upper[0]),
                         float(paired_p(mean_delta[:, None], alternative)[0]) if defined.any() else math.nan,
                         float((mean_delta <= 0).mean()) if defined.any() else math.nan, alternative, level)
