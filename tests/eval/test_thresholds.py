"""Operating points against a brute-force search over every observed score (positive iff
score ≥ t, the largest t among equals), with ties in the scores, and NaN for one class."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrfast.eval.thresholds import per_finding, sensitivity_threshold, specificity_threshold, youden_threshold


def _rates(scores, targets, t):
    positive = scores >= t
    return positive[targets == 1].mean(), (~positive)[targets == 0].mean()


def _brute_youden(scores, targets):
    best = max(_rates(scores, targets, t)[0] + _rates(scores, targets, t)[1] - 1 for t in np.unique(scores))
    return max(t for t in np.unique(scores) if math.isclose(sum(_rates(scores, targets, t)) - 1, best))


def _brute_sensitivity(scores, targets, wanted):
    return max(t for t in np.unique(scores) if _rates(scores, targets, t)[0] >= wanted)


def _brute_specificity(scores, targets, wanted):
    allowed = [t for t in np.unique(scores) if _rates(scores, targets, t)[1] >= wanted]
    return min(allowed) if allowed else math.inf


def _case(seed, n=60):
    g = np.random.default_rng(seed)
    targets = (g.random(n) < 0.3).astype(int)
    scores = np.round(targets * 0.8 + g.normal(0, 0.6, n), 1)  # rounded: many ties
    return scores, targets


@pytest.mark.parametrize("seed", range(5))
def test_youden_equals_the_brute_force_search(seed):
    scores, targets = _case(seed)
    assert youden_threshold(scores, targets) == _brute_youden(scores, targets)


@pytest.mark.parametrize("seed,wanted", [(0, 0.8), (1, 0.95), (2, 1.0), (3, 0.5)])
def test_fixed_sensitivity_equals_the_brute_force_search(seed, wanted):
    scores, targets = _case(seed)
    t = sensitivity_threshold(scores, targets, wanted)
    assert t == _brute_sensitivity(scores, targets, wanted)
    assert _rates(scores, targets, t)[0] >= wanted


def test_one_class_has_no_threshold_and_per_finding_uses_known_labels():
    scores, targets = _case(7)
    assert math.isnan(youden_threshold(scores, np.zeros_like(targets)))
    both = np.stack([scores, scores[::-1]], 1)
    labels = np.stack([targets, np.ones_like(targets)], 1)
    known = np.ones_like(labels, dtype=bool)
    known[:10, 0] = False
    got = per_finding(youden_threshold, both, labels, known)
    assert got[0] == _brute_youden(scores[10:], targets[10:]) and math.isnan(got[1])
    with pytest.raises(ValueError, match=r"sensitivity must be in \(0, 1\]"):
        sensitivity_threshold(scores, targets, 0.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("wanted", [0.5, 0.9, 1.0])
def test_specificity_equals_the_brute_force_search(seed, wanted):
    scores, targets = _case(seed)
    assert specificity_threshold(scores, targets, wanted) == _brute_specificity(scores, targets, wanted)
    assert math.isnan(specificity_threshold(scores, np.zeros_like(targets), wanted))
    with pytest.raises(ValueError, match="specificity must be in"):
        specificity_threshold(scores, targets, 0)
