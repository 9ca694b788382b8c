"""Corrections of per-finding p-values for testing many findings at once, as R's `p.adjust`
defines them (checked against it): Holm's step-down (family-wise error) and Benjamini–Hochberg's
step-up (false discovery rate). A NaN p (a finding that could not be tested) stays NaN and is not
counted among the tests."""

from __future__ import annotations

import numpy as np


def _adjust(p, step) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be a vector, not {p.shape}")
    defined = ~np.isnan(p)
    if ((p[defined] < 0) | (p[defined] > 1)).any():
        raise ValueError("p-values must be in [0, 1]")
    out = np.full(p.shape, np.nan)
    if defined.any():
        out[defined] = step(p[defined])
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p, kind="stable")[::-1]  # largest first
    adjusted = np.minimum(1.0, np.minimum.accumulate(m / np.arange(m, 0, -1) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def holm(p) -> np.ndarray:
    """Holm's adjusted p-values: the k-th smallest times (m − k + 1), made non-decreasing, at most 1."""
    return _adjust(p, _holm)


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg's adjusted p-values: the k-th smallest times m/k, made non-decreasing
    from the largest down, at most 1."""
    return _adjust(p, _benjamini_hochberg)
