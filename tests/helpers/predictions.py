"""Synthetic predictions.csv content for the evaluation's tests: two findings with a signal and a
third with no case, uncertain and missing labels, two images per patient, 80 validation rows."""

from __future__ import annotations

import numpy as np

from cxrfast.eval import Predictions

FINDINGS = ("Cardiomegaly", "Edema", "Nodule")


def synthetic_predictions(seed: int, n: int = 240, signal: float = 1.0, targets=None) -> Predictions:
    rng = np.random.default_rng(seed)
    if targets is None:
        targets = (rng.random((n, 3)) < [0.3, 0.2, 0.0]).astype(np.float32)  # Nodule: no case at all
        targets[rng.random((n, 3)) < 0.05] = -1
        targets[rng.random((n, 3)) < 0.05] = np.nan
    logits = rng.normal(size=(n, 3)) + signal * (targets == 1)
    splits = ["validate" if k < 80 else "test" for k in range(n)]
    return Predictions([f"img{k:03d}.dcm" for k in range(n)], [f"P{k // 2}" for k in range(n)], splits, FINDINGS,
                       1 / (1 + np.exp(-logits)), targets)
