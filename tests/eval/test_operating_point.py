"""Confusion counts and rates at a threshold against scikit-learn's confusion matrix and metrics
(positive iff score ≥ t), and NaN where a rate has no denominator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrfast.eval.operating_point import operating_point


@pytest.mark.parametrize("seed", range(4))
def test_equals_scikit_learn(seed):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

    rng = np.random.default_rng(seed)
    positive = rng.random(300) < 0.2
    scores = np.round(rng.random(300) + 0.3 * positive, 1)  # ties at the threshold
    t = float(np.quantile(scores, 0.7))
    called = scores >= t
    point = operating_point(scores, positive, t)
    tn, fp, fn, tp = confusion_matrix(positive, called).ravel()
    assert (point.tp, point.fp, point.tn, point.fn) == (tp, fp, tn, fn)
    np.testing.assert_allclose(
        [point.accuracy, point.sensitivity, point.specificity, point.ppv, point.npv, point.f1],
        [accuracy_score(positive, called), recall_score(positive, called), recall_score(~positive, ~called),
         precision_score(positive, called), precision_score(~positive, ~called), f1_score(positive, called)],
        rtol=1e-14)
    assert point.as_dict()["f1"] == point.f1 and point.as_dict()["threshold"] == t


def test_an_undefined_rate_is_nan():
    nothing_called = operating_point([0.1, 0.2, 0.3], [True, False, False], 0.9)
    assert (nothing_called.tp, nothing_called.fp, nothing_called.tn, nothing_called.fn) == (0, 0, 2, 1)
    assert math.isnan(nothing_called.ppv) and nothing_called.specificity == 1.0 and nothing_called.f1 == 0.0
    no_cases = operating_point([0.1, 0.5], [False, False], 0.3)
    assert math.isnan(no_cases.sensitivity) and no_cases.f1 == 0.0
    unchosen = operating_point([0.1, 0.5], [True, False], math.nan)
    assert all(math.isnan(v) for k, v in unchosen.as_dict().items() if k not in ("tp", "fp", "tn", "fn"))
