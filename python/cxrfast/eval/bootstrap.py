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


def sorted_orders(models: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) each model's images by ascending score, and (K, N) 1 where a tie block starts."""
    orders = np.stack([np.argsort(np.asarray(s, np.float64)) for s in models]).astype(np.int64)
    first = np.ones(orders.shape, np.uint8)
    for k, s in enumerate(models):
        ordered = np.asarray(s, np.float64)[orders[k]]
        first[k, 1:] = ordered[1:] != ordered[:-1]
    return orders, first


def replicate_auroc(models: Sequence[np.ndarray], positive: np.ndarray, units: np.ndarray, random: np.ndarray,
                    pools: Sequence[tuple[np.ndarray, int]], unit_count: int,
                    orders: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(B, K) AUROC of each of K models' (N,) scores against bool `positive` (N,) in each replicate
    of the uint32 matrix `random` (B, columns) drawn from `pools` (`Resamples.finding_pools`),
    image i weighing as often as its unit `units[i]` is drawn; `orders` is `sorted_orders(models)`
    when the caller has it."""
    from cxrfast import _C

    orders, first = sorted_orders(models) if orders is None else orders
    pool_units = np.concatenate([np.zeros(0, np.int64)] + [np.asarray(pool, np.int64) for pool, _ in pools])
    pool_start = np.cumsum([0] + [len(pool) for pool, _ in pools]).astype(np.int64)
    pool_column = np.array([column for _, column in pools], np.int64)
    out = np.empty((random.shape[0], len(models)))
    _C.bootstrap_auroc(np.ascontiguousarray(random, np.uint32), pool_units, pool_start, pool_column,
                       np.ascontiguousarray(units, np.int64), unit_count, orders, first,
                       np.ascontiguousarray(positive, np.uint8), out)
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
    """One model's AUROCs: on the whole test set, in each finding's (stratified) replicates, and
    their mean over the findings that have an AUROC on the joint replicates."""

    whole: np.ndarray  # (F,)
    finding: np.ndarray  # (B, F)
    mean: np.ndarray  # (B,)

    @property
    def defined(self) -> np.ndarray:
        return ~np.isnan(self.whole)

    @property
    def whole_mean(self) -> float:
        return float(self.whole[self.defined].mean()) if self.defined.any() else math.nan


def replicate(models: Sequence, targets, resamples: Resamples, known=None,
              findings: Sequence[str] | None = None) -> list[Replicated]:
    """Each model's AUROCs on the whole set and on every replicate of `resamples`."""
    columns = finding_columns(models, targets, known, findings or resamples.findings)
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
        units, orders = resamples.units[rows[:, f]], sorted_orders(scores)  # one sort for both kinds of replicate
        finding[:, :, f] = replicate_auroc(scores, positive, units, resamples.random, resamples.finding_pools(f),
                                           resamples.unit_count, orders).T
        joint[:, :, f] = replicate_auroc(scores, positive, units, resamples.random, resamples.joint_pools(),
                                         resamples.unit_count, orders).T
    defined = ~np.isnan(whole[0])
    return [Replicated(whole[k], finding[k], joint[k][:, defined].mean(axis=1) if defined.any()
                       else np.full(B, math.nan)) for k in range(K)]


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


def percentile_interval(replicated: Replicated, level: float = 0.95) -> BootstrapInterval:
    defined = replicated.defined
    lower, upper = _percentiles(replicated.finding, level)
    mean_lower, mean_upper = _percentiles(replicated.mean[:, None], level)
    return BootstrapInterval(replicated.whole, np.where(defined, lower, math.nan), np.where(defined, upper, math.nan),
                             replicated.whole_mean, float(mean_lower[0]), float(mean_upper[0]), defined, level,
                             replicated)


def bootstrap_interval(scores, targets, resamples: Resamples, known=None, level: float = 0.95) -> BootstrapInterval:
    """Percentile CIs of one model's AUROC per finding and of its mean AUROC."""
    return percentile_interval(replicate([scores], targets, resamples, known)[0], level)


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


def paired_comparison(a: Replicated, b: Replicated, alternative: str = "two-sided",
                      level: float = 0.95) -> BootstrapTest:
    """The paired comparison of a with b from their AUROCs on the same replicates."""
    defined = a.defined
    if not defined.any():
        nan = np.full(len(a.whole), math.nan)
        return BootstrapTest(nan, nan, nan, nan, nan, math.nan, math.nan, math.nan, math.nan, math.nan, alternative,
                             level)
    delta, mean_delta = a.finding - b.finding, a.mean - b.mean
    lower, upper = (np.where(defined, bound, math.nan) for bound in _percentiles(delta, level))
    mean_lower, mean_upper = _percentiles(mean_delta[:, None], level)
    return BootstrapTest(a.whole - b.whole, lower, upper, np.where(defined, paired_p(delta, alternative), math.nan),
                         np.where(defined, (delta <= 0).mean(axis=0), math.nan), a.whole_mean - b.whole_mean,
                         float(mean_lower[0]), float(mean_upper[0]), float(paired_p(mean_delta[:, None],
                                                                                    alternative)[0]),
                         float((mean_delta <= 0).mean()), alternative, level)


def bootstrap_test(scores_a, scores_b, targets, resamples: Resamples, known=None, alternative: str = "two-sided",
                   level: float = 0.95) -> BootstrapTest:
    """The paired bootstrap comparison of model a with model b on the same replicates."""
    a, b = replicate([scores_a, scores_b], targets, resamples, known)
    return paired_comparison(a, b, alternative, level)
