"""Holm and Benjamini–Hochberg against R's `p.adjust` (fixtures/proc_reference.R) and against
their definitions by brute force; NaN p-values are not tests."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from cxrfast.eval.multiple_comparisons import benjamini_hochberg, holm


def _r_values() -> dict[str, np.ndarray]:
    values: dict[str, dict[int, float]] = {"p": {}, "holm": {}, "BH": {}}
    with open(Path(__file__).parent / "fixtures" / "proc_reference.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["scenario"] == "p_adjust":
                kind, index = row["quantity"].rsplit("_", 1)
                values[kind][int(index)] = float(row["value"])
    return {kind: np.array([v[k] for k in sorted(v)]) for kind, v in values.items()}


def test_equal_to_r_p_adjust():
    r = _r_values()
    np.testing.assert_allclose(holm(r["p"]), r["holm"], rtol=1e-15)
    np.testing.assert_allclose(benjamini_hochberg(r["p"]), r["BH"], rtol=1e-15)


def _holm_definition(p):
    """Holm by its definition: the adjusted p of test i is the largest, over the tests no larger
    than it in rank order, of (m − rank + 1)·p, capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    rank = {i: k for k, i in enumerate(order)}
    return [min(1.0, max((m - rank[j]) * p[j] for j in order[: rank[i] + 1])) for i in range(m)]


def _bh_definition(p):
    """BH by its definition: the smallest, over the tests of rank ≥ its own, of m·p/rank, capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    rank = {i: k + 1 for k, i in enumerate(order)}
    return [min(1.0, min(m * p[j] / rank[j] for j in order[rank[i] - 1:])) for i in range(m)]


@pytest.mark.parametrize("seed", range(4))
def test_equal_to_the_definitions_with_ties(seed):
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(12) ** 2, 2)  # ties among them
    np.testing.assert_allclose(holm(p), _holm_definition(p), rtol=1e-14)
    np.testing.assert_allclose(benjamini_hochberg(p), _bh_definition(p), rtol=1e-14)


def test_nan_is_not_a_test():
    p = np.array([0.01, math.nan, 0.04, 0.03])
    assert np.isnan(holm(p)[1]) and np.isnan(benjamini_hochberg(p)[1])
    np.testing.assert_allclose(holm(p)[[0, 2, 3]], holm(p[[0, 2, 3]]))
    np.testing.assert_allclose(benjamini_hochberg(p)[[0, 2, 3]], benjamini_hochberg(p[[0, 2, 3]]))
    assert np.isnan(holm([math.nan])).all()
    for bad in ([1.5], [[0.1]]):
        with pytest.raises(ValueError):
            holm(bad)
    assert list(itertools.chain(holm([]), benjamini_hochberg([]))) == []
