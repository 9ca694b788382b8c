"""Scores and targets as every statistic takes them: (N,) for one finding or (N, F) for several,
each model's scores on the same N images, targets 1 (case), 0 (control) or unknown (−1 for
uncertain, NaN for missing, as `predictions.csv` keeps them). A finding is evaluated on its known
rows only. A NaN or infinite score on a known row is an error naming the rows: a model that said
nothing of an image cannot be ranked, and dropping the image would change the test set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrfast.errors import DataError

_SHOWN = 5  # rows named in an error


def as_findings(values, name: str) -> np.ndarray:
    """`values` as a float64 (N, F) matrix; a vector is one finding."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be (N,) or (N, F), not {array.shape}")
    return array


def known_rows(targets, known=None) -> np.ndarray:
    """(N, F) bool: the rows each finding is evaluated on (by default those whose target is 0 or 1)."""
    targets = as_findings(targets, "targets")
    return (targets == 0) | (targets == 1) if known is None else as_findings(known, "known").astype(bool)


def finding_columns(models: Sequence, targets, known=None,
                    findings: Sequence[str] | None = None) -> list[tuple[tuple[np.ndarray, ...], np.ndarray]]:
    """Per finding: each model's scores on its known rows and those rows' bool targets."""
    scores = [as_findings(s, "scores") for s in models]
    targets, known = as_findings(targets, "targets"), known_rows(targets, known)
    for s in scores:
        if not s.shape == targets.shape == known.shape:
            raise ValueError(f"scores {s.shape}, targets {targets.shape} and known {known.shape} must be one shape")
    findings = list(findings) if findings is not None else [f"finding {f}" for f in range(targets.shape[1])]
    if len(findings) != targets.shape[1]:
        raise ValueError(f"{len(findings)} finding names for {targets.shape[1]} findings")
    columns = []
    for f, finding in enumerate(findings):
        rows = known[:, f]
        y = targets[rows, f]
        if not np.isin(y, (0.0, 1.0)).all():
            bad = np.flatnonzero(rows)[~np.isin(y, (0.0, 1.0))]
            raise DataError(f"{finding}: known targets must be 0 or 1; rows {_rows(bad)} are not")
        for k, s in enumerate(scores):
            bad = np.flatnonzero(rows & ~np.isfinite(s[:, f]))
            if len(bad):
                model = f" of model {k + 1}" if len(scores) > 1 else ""
                raise DataError(f"{finding}: scores{model} are not finite at rows {_rows(bad)} (of {len(s)}), "
                                "whose targets are known")
        columns.append((tuple(s[rows, f] for s in scores), y == 1.0))
    return columns


def _rows(rows: np.ndarray) -> str:
    shown = ", ".join(map(str, rows[:_SHOWN]))
    return shown + (f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else "")
