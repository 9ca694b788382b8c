"""DeLong's paired test of two models on one finding: cxrfast's O(N log N) placements (one sort
per model) against the O(m·n) ψ matrix of the definition (`cxrfast.eval.reference`), at 30%
prevalence; both give the same Z (checked in the run). The ψ form needs m·n floats per model
(1.7 GiB at N = 24,000), so past that only ours runs: at N = 1,000,000 it would need 1.7 TB.
"""

from __future__ import annotations

import numpy as np
import pytest

from cxrfast.eval.delong import delong_test
from cxrfast.eval.reference import pairwise_delong

CASES = [2_000, 24_000, 1_000_000]
PAIRWISE_LIMIT = 24_000


def _data(n: int):
    rng = np.random.default_rng(n)
    positive = rng.random(n) < 0.3
    a = rng.normal(size=n) + positive
    b = 0.6 * a + rng.normal(size=n) + 0.5 * positive
    return a, b, positive


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
@pytest.mark.parametrize("n", CASES, ids=[f"N{n}" for n in CASES])
def test_paired_delong(benchmark, tag, n, role):
    if role == "baseline" and n > PAIRWISE_LIMIT:
        pytest.skip(f"the ψ matrices of N = {n:,} need {2 * 0.21 * n * n * 8 / 2**30:,.0f} GiB")
    a, b, positive = _data(n)
    benchmark.group = f"paired DeLong, N={n:,}"
    tag(role, n, "ψ matrix, O(m·n)" if role == "baseline" else None)
    targets = positive.astype(float)
    if role == "cxrfast":
        result = benchmark.pedantic(delong_test, (a, b, targets), rounds=5, warmup_rounds=1)
        if n <= PAIRWISE_LIMIT:
            np.testing.assert_allclose(result.z[0], pairwise_delong(a, b, positive)["z"], rtol=1e-10)
    else:
        benchmark.pedantic(pairwise_delong, (a, b, positive), rounds=3 if n > 2_000 else 5, warmup_rounds=1)
