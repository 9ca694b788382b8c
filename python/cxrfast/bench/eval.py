"""Evaluation statistics against their definitions, same run; each contender's answer is checked
against the other's before it is timed.

- DeLong's paired test of two models on one finding, 30% prevalence: cxrfast's O(N log N)
  placements (one sort per model) against the O(m·n) ψ matrix of the definition
  (`cxrfast.eval.reference`). The ψ form needs m·n floats per model (1.7 GiB at N = 24,000), so
  past that only ours runs.
- The paired bootstrap of study (c): replicates × 14 findings × images for 2 models on one shared
  matrix of uniform 32-bit draws (`cxrfast.eval.resamples`). cxrfast sorts each finding's scores
  once per model and reweights them per replicate (C++, OpenMP); vit-med's loop calls
  scikit-learn's `roc_auc_score` on every resampled finding and model. The loop is slow, so it
  runs a few replicates and its figure is per replicate, as ours is."""

from __future__ import annotations

import numpy as np

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.eval.bootstrap import replicate_auroc
from cxrfast.eval.delong import delong_test
from cxrfast.eval.reference import pairwise_delong

SUITE = "eval"
PAIRWISE_LIMIT = 24_000  # images past which the ψ matrices outgrow a laptop
DELONG_IMAGES = {"full": (2_000, 24_000, 1_000_000), "quick": (2_000, 100_000), "tiny": (500,)}
# replicates, findings, images, replicates of vit-med's loop
BOOTSTRAP = {"full": (1000, 14, 50_000, 10), "quick": (200, 14, 10_000, 4), "tiny": (20, 3, 400, 2)}


def _delong_data(n: int):
    rng = np.random.default_rng(n)
    positive = rng.random(n) < 0.3
    a = rng.normal(size=n) + positive
    b = 0.6 * a + rng.normal(size=n) + 0.5 * positive
    return a, b, positive


def _delong(n: int, role: str):
    def make(workspace: Workspace) -> Step:
        a, b, positive = workspace.shared(("delong", n), lambda: _delong_data(n))
        targets = positive.astype(float)
        if n <= PAIRWISE_LIMIT:  # both must give the definition's Z
            ours, theirs = delong_test(a, b, targets).z[0], pairwise_delong(a, b, positive)["z"]
            np.testing.assert_allclose(ours, theirs, rtol=1e-10)
        if role == "cxrfast":
            return Step(lambda: delong_test(a, b, targets))
        return Step(lambda: pairwise_delong(a, b, positive))

    return make


def _study(replicates: int, findings: int, images: int):
    rng = np.random.default_rng(0)
    positive = rng.random((images, findings)) < np.linspace(0.02, 0.3, findings)
    a = rng.normal(size=(images, findings)) + positive
    b = 0.7 * a + rng.normal(size=(images, findings)) + 0.3 * positive
    random = rng.integers(0, 2**32, size=(replicates, images), dtype=np.uint32)
    return a, b, positive, random


def _ours(a, b, positive, random) -> np.ndarray:
    images = len(a)
    units = np.arange(images)
    return np.stack([replicate_auroc([a[:, f], b[:, f]], positive[:, f], units, random, [(units, 0)], images)
                     for f in range(a.shape[1])], axis=1)  # (B, F, 2)


def _indices(random: np.ndarray, images: int) -> np.ndarray:
    """The index matrix the draws stand for: ⌊r · N / 2³²⌋."""
    return ((random.astype(np.uint64) * np.uint64(images)) >> np.uint64(32)).astype(np.int64)


def _vitmed(a, b, positive, indices) -> np.ndarray:
    from sklearn.metrics import roc_auc_score

    return np.array([[[roc_auc_score(positive[d, f], s[d, f]) for s in (a, b)] for f in range(a.shape[1])]
                     for d in indices])


def _bootstrap(sizes: tuple[int, int, int, int], role: str):
    replicates, findings, images, loop_replicates = sizes

    def make(workspace: Workspace) -> Step:
        a, b, positive, random = workspace.shared(("study", sizes), lambda: _study(replicates, findings, images))
        indices = _indices(random[:loop_replicates], images)  # made outside the timing
        np.testing.assert_allclose(_ours(a, b, positive, random[:loop_replicates]), _vitmed(a, b, positive, indices),
                                   rtol=0, atol=1e-12)
        if role == "cxrfast":
            return Step(lambda: _ours(a, b, positive, random))
        return Step(lambda: _vitmed(a, b, positive, indices))

    return make


def cases(scale: str, device: str) -> list[Case]:
    found = []
    for n in DELONG_IMAGES[scale]:
        group = f"paired DeLong, N={n:,}"
        found.append(Case(SUITE, group, "cxrfast", "cxrfast", n, _delong(n, "cxrfast"), rounds=5, unit="image"))
        skip = (f"the ψ matrices of N = {n:,} need {2 * 0.21 * n * n * 8 / 2**30:,.0f} GiB"
                if n > PAIRWISE_LIMIT else None)
        found.append(Case(SUITE, group, "ψ matrix, O(m·n)", "baseline", n, _delong(n, "baseline"),
                          rounds=3 if n > 2_000 else 5, unit="image", skip=skip))
    sizes = BOOTSTRAP[scale]
    replicates, findings, images, loop_replicates = sizes
    group = f"paired bootstrap, {findings} findings × {images:,} images × 2 models"
    found.append(Case(SUITE, group, "cxrfast", "cxrfast", replicates, _bootstrap(sizes, "cxrfast"), unit="replicate"))
    found.append(Case(SUITE, group, "vit-med's loop (roc_auc_score per replicate, finding, model)", "baseline",
                      loop_replicates, _bootstrap(sizes, "baseline"), rounds=1, warmup=0, unit="replicate"))
    return found
