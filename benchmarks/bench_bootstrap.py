"""The paired bootstrap of study (c): 1000 replicates × 14 findings × 50,000 test images for 2
models, on one shared index matrix of images drawn with replacement (vit-med's protocol), here
read from a matrix of uniform 32-bit draws as cxrfast's replicates are (`cxrfast.eval.resamples`).
cxrfast sorts each finding's scores once per model and reweights them per replicate (C++,
OpenMP, reading the draws itself); vit-med's loop calls scikit-learn's `roc_auc_score` on every
resampled finding and model. The loop takes minutes for all 1000 replicates, so it runs the first
10 and its figure is per replicate, as ours is; on those 10 both give the same AUROCs (checked in
the run, 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest

from cxrfast.eval.bootstrap import replicate_auroc

REPLICATES, FINDINGS, IMAGES, BASELINE_REPLICATES = 1000, 14, 50_000, 10


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(0)
    positive = rng.random((IMAGES, FINDINGS)) < np.linspace(0.02, 0.3, FINDINGS)
    a = rng.normal(size=(IMAGES, FINDINGS)) + positive
    b = 0.7 * a + rng.normal(size=(IMAGES, FINDINGS)) + 0.3 * positive
    random = rng.integers(0, 2**32, size=(REPLICATES, IMAGES), dtype=np.uint32)
    return a, b, positive, random


def _ours(a, b, positive, random) -> np.ndarray:
    units = np.arange(IMAGES)
    return np.stack([replicate_auroc([a[:, f], b[:, f]], positive[:, f], units, random, [(units, 0)], IMAGES)
                     for f in range(FINDINGS)], axis=1)  # (B, F, 2)


def _indices(random) -> np.ndarray:
    """The index matrix the draws stand for: ⌊r · N / 2³²⌋."""
    return ((random.astype(np.uint64) * np.uint64(IMAGES)) >> np.uint64(32)).astype(np.int64)


def _vitmed(a, b, positive, indices) -> np.ndarray:
    from sklearn.metrics import roc_auc_score

    return np.array([[[roc_auc_score(positive[d, f], s[d, f]) for s in (a, b)] for f in range(FINDINGS)]
                     for d in indices])


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
def test_paired_bootstrap(benchmark, tag, study, role):
    a, b, positive, random = study
    benchmark.group = f"paired bootstrap, {FINDINGS} findings × {IMAGES:,} images × 2 models"
    if role == "cxrfast":
        tag(role, REPLICATES)
        ours = benchmark.pedantic(_ours, (a, b, positive, random), rounds=3, warmup_rounds=1)
        reference = _vitmed(a, b, positive, _indices(random[:2]))
        np.testing.assert_allclose(ours[:2], reference, rtol=0, atol=1e-12)
    else:
        tag(role, BASELINE_REPLICATES, "vit-med's loop (roc_auc_score per replicate, finding, model)")
        indices = _indices(random[:BASELINE_REPLICATES])  # (the index matrix is made outside the timing)
        theirs = benchmark.pedantic(_vitmed, (a, b, positive, indices), rounds=1, iterations=1)
        np.testing.assert_allclose(theirs, _ours(a, b, positive, random[:BASELINE_REPLICATES]), rtol=0, atol=1e-12)
