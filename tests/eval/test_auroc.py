"""Per-finding AUROC against its definition (the share of (positive, negative) pairs the score
orders correctly, ties counting ½) and scikit-learn's `roc_auc_score`, over the known labels
only; the placements DeLong builds on against theirs; scores that cannot be ranked."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from cxrfast.errors import DataError
from cxrfast.eval.auroc import auroc, mean_defined, per_finding_auroc, placements


def _pairs(scores, targets) -> float:
    positives, negatives = scores[targets == 1], scores[targets == 0]
    wins = (positives[:, None] > negatives[None]).sum() + 0.5 * (positives[:, None] == negatives[None]).sum()
    return wins / (len(positives) * len(negatives))


@pytest.mark.parametrize("seed", range(3))
def test_equals_the_pairwise_definition_over_known_labels(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (60, 3)).astype(float)  # many ties
    targets = rng.integers(0, 2, (60, 3)).astype(float)
    known = rng.random((60, 3)) > 0.2
    result = per_finding_auroc(scores, targets, known)
    for f in range(3):
        assert result[f] == pytest.approx(_pairs(scores[known[:, f], f], targets[known[:, f], f]), abs=1e-12)


def test_one_class_is_nan_and_left_out_of_the_mean():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.4]])
    targets = np.array([[0, 1], [1, 1], [0, 1]], float)
    known = np.array([[True, True], [True, True], [True, False]])
    result = per_finding_auroc(scores, targets, known)
    assert result[0] == 1.0 and math.isnan(result[1])
    assert mean_defined(result) == 1.0 and math.isnan(mean_defined(np.array([math.nan])))
    with pytest.raises(ValueError, match="must be one"):
        per_finding_auroc(scores, targets[:2], known)


@pytest.mark.parametrize("ties", [None, 3, 2])
def test_equals_scikit_learn_on_random_and_tied_scores(ties):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(ties or 0)
    scores = rng.normal(size=(5000, 4)) if ties is None else rng.integers(0, ties, (5000, 4)).astype(float)
    targets = (rng.random((5000, 4)) < [0.5, 0.1, 0.01, 0.3]).astype(float)
    expected = [roc_auc_score(targets[:, f], scores[:, f]) for f in range(4)]
    np.testing.assert_allclose(per_finding_auroc(scores, targets), expected, rtol=0, atol=1e-13)
    assert auroc(scores[:, 0], targets[:, 0] == 1) == pytest.approx(expected[0], abs=1e-13)


def test_unknown_targets_are_left_out_by_default():
    rng = np.random.default_rng(1)
    scores, targets = rng.random((200, 2)), rng.integers(0, 2, (200, 2)).astype(float)
    targets[::7, 0], targets[::5, 1] = -1, math.nan  # uncertain, missing
    known = (targets == 0) | (targets == 1)
    expected = [_pairs(scores[known[:, f], f], targets[known[:, f], f]) for f in range(2)]
    np.testing.assert_allclose(per_finding_auroc(scores, targets), expected, atol=1e-12)


def test_placements_are_the_shares_each_image_wins():
    rng = np.random.default_rng(2)
    scores, positive = rng.integers(0, 8, 300).astype(float), rng.random(300) < 0.3
    placed = placements(scores, positive)
    cases, controls = scores[positive], scores[~positive]
    wins = (cases[:, None] > controls[None]) + 0.5 * (cases[:, None] == controls[None])
    np.testing.assert_allclose(placed.cases, wins.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(placed.controls, wins.mean(axis=0), atol=1e-12)
    assert placed.auc == pytest.approx(wins.mean(), abs=1e-12)
    assert math.isnan(placements(scores, np.zeros(300, bool)).auc)


def test_scores_that_cannot_be_ranked_name_their_rows():
    scores, targets = np.full((10, 2), 0.5), np.stack([np.arange(10) % 2, np.arange(10) // 5], 1).astype(float)
    scores[[3, 8], 1] = math.nan
    scores[4, 0] = math.inf
    with pytest.raises(DataError, match=r"finding 0: scores are not finite at rows 4 \(of 10\)"):
        per_finding_auroc(scores, targets)
    scores[4, 0] = 0.5
    with pytest.raises(DataError, match=r"finding 1: scores are not finite at rows 3, 8"):
        per_finding_auroc(scores, targets)
    targets[3, 1] = -1  # an unknown target's score is not needed
    targets[8, 1] = math.nan
    assert per_finding_auroc(scores, targets)[1] == 0.5
    with pytest.raises(DataError, match=r"finding 0: known targets must be 0 or 1; rows 0, 1, 2, 3, 4 and 5 more are not"):
        per_finding_auroc(scores, np.full((10, 2), 2.0), np.ones((10, 2), bool))


def test_the_evaluation_needs_no_torch():
    """Statistics run where torch is not installed (a statistician's laptop, a CI job)."""
    check = "import sys, cxrfast.eval; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    subprocess.run([sys.executable, "-c", check], check=True)
