"""The bootstrap: each replicate's AUROC against scikit-learn's on the materialised resample (the
images repeated as often as drawn), stratification that keeps every finding's cases and
controls, patient clusters drawn whole, joint replicates that never lose a class, seeds that
reproduce, percentile CIs against numpy's quantiles of brute-force replicates, and paired
p-values that are never 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrfast.errors import DataError
from cxrfast.eval.bootstrap import bootstrap_interval, bootstrap_test, paired_p, replicate_auroc
from cxrfast.eval.resamples import Resamples, draw_resamples


def _materialised(scores, positive, units, draw):
    """The resample itself: image i repeated as often as its unit was drawn."""
    repeat = np.bincount(draw, minlength=units.max() + 1)[units]
    return np.repeat(scores, repeat), np.repeat(positive, repeat)


def _finding(resamples, f, rows=slice(None)):
    return resamples.draws(resamples.finding_pools(f), rows)


def _joint(resamples):
    return resamples.draws(resamples.joint_pools())


def _sklearn_replicates(scores, positive, units, draws):
    from sklearn.metrics import roc_auc_score

    return np.array([roc_auc_score(*_materialised(scores, positive, units, d)[::-1]) for d in draws])


def _data(seed, n=300, patients=None):
    rng = np.random.default_rng(seed)
    positive = rng.random((n, 2)) < [0.3, 0.1]
    a = np.round(rng.normal(size=(n, 2)) + positive, 1)  # ties
    b = np.round(0.5 * a + rng.normal(size=(n, 2)), 1)
    targets = positive.astype(float)
    targets[rng.random((n, 2)) < 0.1] = -1  # uncertain: left out per finding
    ids = None if patients is None else [f"P{k}" for k in rng.integers(0, patients, n)]
    return a, b, targets, ids


@pytest.mark.parametrize("patients", [None, 80])
def test_each_replicate_equals_scikit_learn_on_the_resample(patients):
    a, b, targets, ids = _data(0, patients=patients)
    resamples = draw_resamples(targets, patients=ids, replicates=40, seed=3)
    assert resamples.clustered == (patients is not None)
    for f in range(2):
        rows = targets[:, f] >= 0
        positive, units = targets[rows, f] == 1, resamples.units[rows]
        for pools in (resamples.finding_pools(f), resamples.joint_pools()):
            draws = resamples.draws(pools)
            ours = replicate_auroc([a[rows, f], b[rows, f]], positive, units, resamples.random, pools,
                                   resamples.unit_count)
            np.testing.assert_allclose(ours[:, 0], _sklearn_replicates(a[rows, f], positive, units, draws), atol=1e-13)
            np.testing.assert_allclose(ours[:, 1], _sklearn_replicates(b[rows, f], positive, units, draws), atol=1e-13)


@pytest.mark.parametrize("patients", [None, 60])
def test_stratified_replicates_keep_each_findings_cases_and_controls(patients):
    _, _, targets, ids = _data(1, patients=patients)
    resamples = draw_resamples(targets, patients=ids, replicates=300, seed=0)
    for f in range(2):
        rows = targets[:, f] >= 0
        case_units = set(resamples.units[rows & (targets[:, f] == 1)])
        control_units = set(resamples.units[rows]) - case_units
        for draw in _finding(resamples, f):
            drawn = list(draw)
            assert sum(u in case_units for u in drawn) == len(case_units)
            assert sum(u in control_units for u in drawn) == len(control_units)
            if patients is None:  # image units: exactly the test set's numbers of cases and controls
                _, positive = _materialised(targets[rows, f], targets[rows, f] == 1, resamples.units[rows], draw)
                assert (positive.sum(), (~positive).sum()) == ((targets[rows, f] == 1).sum(),
                                                               (targets[rows, f] == 0).sum())


def test_patients_are_drawn_whole():
    _, _, targets, ids = _data(2, patients=50)
    resamples = draw_resamples(targets, patients=ids, replicates=5, seed=0)
    assert resamples.unit_count == len(set(ids))
    for p in set(ids):  # every image of a patient has its unit
        assert len({resamples.units[k] for k, q in enumerate(ids) if q == p}) == 1
    unclustered = draw_resamples(targets, patients=[f"Q{k}" for k in range(len(ids))], replicates=5)
    assert not unclustered.clustered and list(unclustered.units) == list(range(len(ids)))
    with pytest.raises(DataError, match="cluster=True needs each image's patient"):
        draw_resamples(targets, cluster=True)


def test_joint_replicates_never_lose_a_class():
    targets = np.zeros((40, 2))
    targets[:20, 0] = 1
    targets[7, 1] = targets[30, 1] = 1  # two cases in 40: a plain resample misses both 1 time in 7
    resamples = draw_resamples(targets, replicates=400, seed=5)
    assert resamples.redrawn > 0
    for draw in _joint(resamples):
        _, positive = _materialised(targets[:, 1], targets[:, 1] == 1, resamples.units, draw)
        assert positive.any() and not positive.all()
    scores = np.random.default_rng(0).random((40, 2))
    assert np.isfinite(bootstrap_interval(scores, targets, resamples).replicates.mean).all()


def test_the_same_seed_gives_the_same_replicates_and_they_save(tmp_path):
    _, _, targets, ids = _data(3, patients=90)
    first, again = (draw_resamples(targets, patients=ids, replicates=50, seed=11) for _ in range(2))
    other = draw_resamples(targets, patients=ids, replicates=50, seed=12)
    assert all(np.array_equal(_finding(first, f), _finding(again, f)) for f in range(2))
    assert np.array_equal(_joint(first), _joint(again))
    assert not np.array_equal(_joint(first), _joint(other))
    loaded = Resamples.load(first.save(tmp_path / "replicates.npz"))
    assert loaded.findings == first.findings and (loaded.seed, loaded.clustered) == (11, True)
    assert np.array_equal(loaded.units, first.units) and np.array_equal(_joint(loaded), _joint(first))
    assert all(np.array_equal(_finding(loaded, f), _finding(first, f)) for f in range(2))
    assert loaded.random.dtype == np.uint32 and loaded.random.shape == (50, len(set(ids)))
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"bad\.npz: not a saved set of bootstrap replicates"):
        Resamples.load(tmp_path / "bad.npz")


def test_intervals_are_percentiles_of_the_replicates():
    from sklearn.metrics import roc_auc_score

    a, _, targets, _ = _data(4)
    resamples = draw_resamples(targets, replicates=200, seed=2)
    interval = bootstrap_interval(a, targets, resamples, level=0.9)
    brute = []
    for f in range(2):
        rows = targets[:, f] >= 0
        brute.append(_sklearn_replicates(a[rows, f], targets[rows, f] == 1, resamples.units[rows],
                                         _finding(resamples, f)))
        assert interval.auc[f] == pytest.approx(roc_auc_score(targets[rows, f], a[rows, f]), abs=1e-13)
    brute = np.stack(brute, 1)
    np.testing.assert_allclose(interval.lower, np.quantile(brute, 0.05, axis=0), atol=1e-13)
    np.testing.assert_allclose(interval.upper, np.quantile(brute, 0.95, axis=0), atol=1e-13)
    joint = np.stack([_sklearn_replicates(a[targets[:, f] >= 0, f], targets[targets[:, f] >= 0, f] == 1,
                                          resamples.units[targets[:, f] >= 0], _joint(resamples))
                      for f in range(2)], 1).mean(axis=1)
    np.testing.assert_allclose([interval.mean_lower, interval.mean_upper], np.quantile(joint, [0.05, 0.95]),
                               atol=1e-13)
    assert interval.mean == pytest.approx(interval.auc.mean())


def test_paired_p_values_are_never_0():
    a, b, targets, _ = _data(5)
    resamples = draw_resamples(targets, replicates=99, seed=0)
    perfect = np.where(targets == 1, 1.0, 0.0)  # a separates perfectly, so it wins every replicate
    test = bootstrap_test(perfect, b, targets, resamples)
    np.testing.assert_allclose(test.p, 2 / 100)  # (1 + 0)/(B + 1), doubled
    np.testing.assert_allclose(bootstrap_test(perfect, b, targets, resamples, alternative="greater").p, 1 / 100)
    np.testing.assert_allclose(test.p_vitmed, 0.0)  # vit-med's ratio: 0, what ours never reports
    same = bootstrap_test(a, a.copy(), targets, resamples)
    assert list(same.p) == [1.0, 1.0] and list(same.difference) == [0.0, 0.0] and same.mean_p == 1.0
    deltas = np.random.default_rng(0).normal(0.01, 0.02, (999, 3))
    greater, less = (1 + (deltas <= 0).sum(0)) / 1000, (1 + (deltas >= 0).sum(0)) / 1000
    np.testing.assert_allclose(paired_p(deltas, "greater"), greater)
    np.testing.assert_allclose(paired_p(deltas, "less"), less)
    np.testing.assert_allclose(paired_p(deltas, "two-sided"), np.minimum(1, 2 * np.minimum(greater, less)))
    with pytest.raises(ValueError, match="alternative must be one of"):
        paired_p(deltas, "both")


def test_one_class_findings_are_nan_and_out_of_the_mean():
    a, b, targets, _ = _data(6)
    targets[:, 1] = np.where(targets[:, 1] >= 0, 0, -1)  # no case left
    resamples = draw_resamples(targets, replicates=30, seed=0)
    interval = bootstrap_interval(a, targets, resamples)
    assert math.isnan(interval.auc[1]) and math.isnan(interval.lower[1]) and list(interval.defined) == [True, False]
    assert interval.mean == interval.auc[0]
    test = bootstrap_test(a, b, targets, resamples)
    assert math.isnan(test.p[1]) and not math.isnan(test.mean_p)


def test_the_native_walk_checks_its_indices():
    from cxrfast import _C

    random = np.zeros((1, 3), np.uint32)
    order, first = np.array([[0, 1, 2]]), np.ones((1, 3), np.uint8)
    units, positive, out = np.array([0, 1, 2]), np.array([1, 0, 0], np.uint8), np.empty((1, 1))
    pool, start, column = np.array([0, 1, 2]), np.array([0, 3]), np.array([0])

    def walk(**change):
        arguments = dict(random=random, pool_units=pool, pool_start=start, pool_column=column, unit=units, units=3,
                         order=order, first=first, positive=positive, out=out)
        _C.bootstrap_auroc(**{**arguments, **change})

    walk()
    assert math.isnan(out[0, 0])  # every slot drew unit 0, the case: no control, so no AUROC
    walk(random=np.array([[0, 2**31, 2**32 - 1]], np.uint32))  # units 0, 1, 2: the case, lowest, below both
    assert out[0, 0] == 0.0
    with pytest.raises(ValueError, match="pool unit 1 is outside"):
        walk(pool_units=np.array([0, 3, 1]))
    with pytest.raises(ValueError, match="pool 0 reads columns outside random"):
        walk(pool_column=np.array([1]))
    with pytest.raises(ValueError, match="not a permutation"):
        walk(order=np.array([[0, 0, 2]]))
    with pytest.raises(ValueError, match="unit 2 is outside"):
        walk(unit=np.array([0, 1, 5]))
    with pytest.raises(ValueError, match="out holds 1 values, 2 expected"):
        walk(random=np.zeros((2, 3), np.uint32))
    with pytest.raises(ValueError, match="pool_start must run from 0"):
        walk(pool_start=np.array([0, 2]))


def test_draws_are_uniform_over_their_pools_and_chunks_change_nothing():
    targets = np.zeros((70, 1))
    targets[:7] = 1  # a case pool of 7 units, a control pool of 63
    resamples = draw_resamples(targets, replicates=3000, seed=9)
    counts = np.bincount(_finding(resamples, 0)[:, :7].ravel(), minlength=7)
    expected = 3000  # 3000 replicates × 7 slots over 7 units
    assert counts[7:].sum() == 0 and (np.abs(counts[:7] - expected) < 5 * np.sqrt(expected)).all()
    scores = np.random.default_rng(1).random((70, 1))
    interval = bootstrap_interval(scores, targets, resamples)  # 3000 replicates: twelve chunks
    late = slice(2990, 3000)
    np.testing.assert_allclose(interval.replicates.finding[late, 0],
                               _sklearn_replicates(scores[:, 0], targets[:, 0] == 1, resamples.units,
                                                   _finding(resamples, 0, late)), atol=1e-13)
