"""Per-finding AUROC against its definition: the share of (positive, negative) pairs the score
orders correctly, ties counting ½, over the known labels only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrfast.eval.auroc import mean_defined, per_finding_auroc


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
