"""DeLong's statistics by their definition, O(m·n): every (case, control) pair's ψ = 1 if the case
scores higher, ½ if tied, 0 if lower, kept as an m × n matrix. What the tests check the O(N log N)
code against, and what the benchmark measures it against; nothing else should call it."""

from __future__ import annotations

import math

import numpy as np


def pairwise_components(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(V10 per case, V01 per control, AUROC) from the ψ matrix."""
    cases, controls = scores[positive], scores[~positive]
    psi = (cases[:, None] > controls[None]) + 0.5 * (cases[:, None] == controls[None])
    return psi.mean(axis=1), psi.mean(axis=0), float(psi.mean())


def pairwise_delong(a: np.ndarray, b: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """AUROC and variance of `a`, AUROC of `b`, and the paired Z and σ from the 2 × 2 covariance
    S = S10/m + S01/n (sample covariances, denominators m − 1 and n − 1)."""
    v10a, v01a, auc_a = pairwise_components(a, positive)
    v10b, v01b, auc_b = pairwise_components(b, positive)
    s = np.cov(np.stack([v10a, v10b])) / positive.sum() + np.cov(np.stack([v01a, v01b])) / (~positive).sum()
    sigma = math.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return {"auc_a": auc_a, "var_a": float(s[0, 0]), "auc_b": auc_b, "z": (auc_a - auc_b) / sigma, "sigma": sigma}
