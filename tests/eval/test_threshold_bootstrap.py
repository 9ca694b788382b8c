"""CIs of the average precision and of the rates at an operating point against each replicate
materialised: the images its drawn units bring, repeated as often as drawn, scored by
scikit-learn's average_precision_score and by counting, then the percentiles taken directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cxrfast.eval.operating_point import RATES, operating_point
from cxrfast.eval.resamples import draw_resamples
from cxrfast.eval.threshold_bootstrap import (average_precision_interval, rates_interval, replicate_weights,
                                              weighted_average_precision)


def _set(seed, patients=30, per_patient=2):
    rng = np.random.default_rng(seed)
    targets = (rng.random((patients * per_patient, 1)) < 0.35).astype(np.float64)
    scores = np.round(targets[:, 0] * 0.4 + rng.random(len(targets)), 2)  # rounded: ties
    patient_ids = [f"p{i // per_patient}" for i in range(len(targets))]
    return scores, targets, patient_ids


def _materialised(resamples, units):
    """Each replicate's images, as many times as their units are drawn."""
    for rows in resamples.chunks():
        for drawn in resamples.draws(resamples.finding_pools(0), rows):
            yield np.concatenate([np.flatnonzero(units == u) for u in drawn])


@pytest.mark.parametrize("per_patient", [1, 2])
def test_the_intervals_equal_materialised_replicates(per_patient):
    scores, targets, patients = _set(per_patient, per_patient=per_patient)
    resamples = draw_resamples(targets, patients=patients, replicates=300, seed=1, findings=["Nodule"])
    positive, units = targets[:, 0] == 1, resamples.units
    threshold = 0.7
    aps, rates = [], {rate: [] for rate in RATES}
    for images in _materialised(resamples, units):
        aps.append(average_precision_score(positive[images], scores[images]))
        point = operating_point(scores[images], positive[images], threshold)
        for rate in RATES:
            rates[rate].append(getattr(point, rate))
    weights = np.concatenate(list(replicate_weights(resamples, 0, units)))
    np.testing.assert_allclose(weighted_average_precision(scores, positive, weights), aps, rtol=1e-12)
    assert average_precision_interval(scores, positive, units, resamples, 0, 0.95) == pytest.approx(
        list(np.quantile(aps, [0.025, 0.975])))
    ours = rates_interval(scores, positive, threshold, units, resamples, 0, 0.9)
    for rate in RATES:
        values = np.array(rates[rate])
        assert ours[rate] == pytest.approx(list(np.quantile(values[~np.isnan(values)], [0.05, 0.95]))), rate


def test_weights_equal_sklearns_sample_weights_and_undefined_cases_are_nan():
    rng = np.random.default_rng(3)
    scores, positive = np.round(rng.random(40), 1), rng.random(40) < 0.4
    weights = rng.integers(0, 3, (5, 40)).astype(float)
    expected = [average_precision_score(positive, scores, sample_weight=w) for w in weights]
    np.testing.assert_allclose(weighted_average_precision(scores, positive, weights), expected, rtol=1e-12)
    assert math.isnan(weighted_average_precision(scores, np.zeros(40, bool), weights)[0])
    scores, targets, patients = _set(0)
    resamples = draw_resamples(targets, patients=patients, replicates=50, seed=0, findings=["Nodule"])
    nothing = rates_interval(scores, targets[:, 0] == 1, math.nan, resamples.units, resamples, 0, 0.95)
    assert all(math.isnan(v) for bounds in nothing.values() for v in bounds)
