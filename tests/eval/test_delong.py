"""DeLong's variance, CI and paired test against the brute-force O(m·n) reference written from
the definition (DeLong, DeLong & Clarke-Pearson, 1988; `cxrfast.eval.reference`) and against R's pROC 1.18.0 on the data in
fixtures/ (made by fixtures/proc_reference.R, pROC's own aSAH example among them, whose values
pROC's tests expect); and the edge cases."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from cxrfast.errors import DataError
from cxrfast.eval.delong import delong_interval, delong_test
from cxrfast.eval.reference import pairwise_delong

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_equals_the_definition(seed, ties):
    rng = np.random.default_rng(seed)
    positive = rng.random((400, 3)) < [0.3, 0.05, 0.5]
    a = rng.normal(size=(400, 3)) + positive
    b = 0.5 * a + rng.normal(size=(400, 3)) + 0.5 * positive
    if ties:
        a, b = np.round(a), np.round(b * 2) / 2
    targets = positive.astype(float)
    interval, test = delong_interval(a, targets), delong_test(a, b, targets)
    for f in range(3):
        auc_a, var_a, auc_b, z, sigma = pairwise_delong(a[:, f], b[:, f], positive[:, f]).values()
        np.testing.assert_allclose([interval.auc[f], interval.variance[f], test.auc_b[f], test.z[f], test.sigma[f]],
                                   [auc_a, var_a, auc_b, z, sigma], rtol=1e-10, atol=1e-12)
        half = norm.ppf(0.975) * math.sqrt(var_a)
        np.testing.assert_allclose([interval.lower[f], interval.upper[f]],
                                   [max(0, auc_a - half), min(1, auc_a + half)], atol=1e-12)
        np.testing.assert_allclose(test.p[f], 2 * norm.sf(abs(z)), rtol=1e-10)
        np.testing.assert_allclose([test.lower[f], test.upper[f]],
                                   [auc_a - auc_b - norm.ppf(0.975) * sigma, auc_a - auc_b + norm.ppf(0.975) * sigma],
                                   atol=1e-12)


def _proc():
    data, reference = defaultdict(list), defaultdict(dict)
    with open(FIXTURES / "proc_data.csv", newline="") as f:
        for row in csv.DictReader(f):
            data[row["scenario"]].append((float(row["y"]), float(row["a"]), float(row["b"])))
    with open(FIXTURES / "proc_reference.csv", newline="") as f:
        for row in csv.DictReader(f):
            reference[row["scenario"]][row["quantity"]] = float(row["value"])
    return {name: np.array(rows).T for name, rows in data.items()}, reference


DATA, REFERENCE = _proc()


@pytest.mark.parametrize("scenario", sorted(DATA))
def test_equals_proc(scenario):
    y, a, b = DATA[scenario]
    expected = REFERENCE[scenario]
    interval = delong_interval(a, y)
    np.testing.assert_allclose([interval.auc[0], interval.variance[0], interval.lower[0], interval.upper[0]],
                               [expected[k] for k in ("auc_a", "var_a", "ci_a_lower", "ci_a_upper")],
                               rtol=1e-10, atol=1e-14)
    for alternative in ("two-sided", "greater", "less"):
        test = delong_test(a, b, y, alternative=alternative)
        key = alternative.replace("-", ".")
        np.testing.assert_allclose([test.auc_b[0], test.z[0], test.p[0], test.lower[0], test.upper[0]],
                                   [expected["auc_b"], expected[f"z_{key}"], expected[f"p_{key}"],
                                    expected["diff_lower"], expected["diff_upper"]], rtol=1e-10, atol=1e-14)


def test_procs_own_expected_values():
    """pROC's tests/testthat (test-roc.test.R, test-ci.auc.R) on aSAH, as research/downstream.md lists them."""
    y, wfns, s100b = DATA["aSAH_wfns_s100b"]
    _, _, ndka = DATA["aSAH_wfns_ndka"]
    test = delong_test(wfns, s100b, y)
    np.testing.assert_allclose([test.z[0], test.p[0], test.lower[0], test.upper[0]],
                               [2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478],
                               rtol=1e-12)
    np.testing.assert_allclose([delong_test(wfns, ndka, y).z[0], delong_test(wfns, ndka, y).p[0]],
                               [2.79777591868904, 0.00514557970691098], rtol=1e-12)
    np.testing.assert_allclose([delong_test(ndka, s100b, y).z[0], delong_test(ndka, s100b, y).p[0]],
                               [-1.39077002573558, 0.164295175223054], rtol=1e-12)
    interval = delong_interval(ndka, y)
    np.testing.assert_allclose([interval.lower[0], interval.auc[0], interval.upper[0]],
                               [0.501244999271703, 0.611957994579946, 0.722670989888189], rtol=1e-12)


def test_identical_predictions_give_z_0_and_p_1():
    y, a, _ = DATA["continuous"]
    for alternative, p in (("two-sided", 1.0), ("greater", 0.5), ("less", 0.5)):
        test = delong_test(a, a.copy(), y, alternative=alternative)
        assert (test.z[0], test.p[0], test.sigma[0], test.lower[0], test.upper[0]) == (0.0, p, 0.0, 0.0, 0.0)


def test_edge_cases():
    # one case: an AUROC, but no variance (pROC: NA); no case: nothing
    one = delong_interval([0.2, 0.9, 0.4, 0.1], [0, 1, 0, 0])
    assert one.auc[0] == 1.0 and math.isnan(one.variance[0]) and math.isnan(one.lower[0])
    assert math.isnan(delong_test([0.2, 0.9, 0.4], [0.1, 0.3, 0.4], [0, 1, 0]).p[0])
    assert math.isnan(delong_interval([0.2, 0.4], [0, 0]).auc[0])
    # perfect separation: AUROC 1 with no variance; all ties: ½ with none
    perfect = delong_interval([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert (perfect.auc[0], perfect.variance[0], perfect.lower[0], perfect.upper[0]) == (1.0, 0.0, 1.0, 1.0)
    tied = delong_interval(np.full(6, 0.3), [0, 1, 0, 1, 0, 1])
    assert (tied.auc[0], tied.variance[0]) == (0.5, 0.0)
    # a difference without noise is infinitely significant, not NaN
    shifted = delong_test([0.1, 0.2, 0.8, 0.9], np.full(4, 0.5), [0, 0, 1, 1])
    assert shifted.z[0] == math.inf and shifted.p[0] == 0.0
    # unknown targets are left out per finding; scores there may be anything
    y = np.array([[0, 1], [1, -1], [0, 0], [1, math.nan], [0, 1]], float)
    s = np.array([[0.1, 0.9], [0.7, math.nan], [0.2, 0.1], [0.8, 0.5], [0.3, 0.7]])
    interval = delong_interval(s, y)
    assert list(interval.auc) == [1.0, 1.0]
    s[2, 1] = math.nan
    with pytest.raises(DataError, match=r"Edema: scores of model 2 are not finite at rows 2 \(of 5\)"):
        delong_test(np.full((5, 2), 0.5), s, y, findings=["Atelectasis", "Edema"])
    with pytest.raises(ValueError, match="alternative must be one of two-sided, greater, less"):
        delong_test(s, s, y, alternative="two.sided")
