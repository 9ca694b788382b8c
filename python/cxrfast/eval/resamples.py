"""Bootstrap replicates of one test set, drawn once and shared by every model compared, so that a
paired comparison sees each model on the very same resamples; saved with the results, so it can
be rerun, or extended to another model, on them.

A replicate draws units with replacement: images, or, when a patient has several images,
patients (each drawn patient brings all its images; "clustered"). Everything comes from one
matrix of B × U uniform 32-bit integers (U units), `random`: slot j of replicate b picks the unit
⌊random[b, j] · n / 2³²⌋ of a pool of n (Lemire's multiply-shift; no unit is likelier than
another by more than n / 2³², 10⁻⁵ at n = 50,000). Each finding's replicates are stratified by
its class, as pROC's are: its case units (a patient with any known positive image for it) fill
the first slots from the case pool and its control units the next from the control pool, so every
replicate keeps their numbers and never loses a class. The mean AUROC over findings needs every
finding on the same replicate (the findings' errors are correlated through the images): its
joint replicates draw all U slots from all units, and a replicate in which some finding lost a
class is drawn again (its row of `random` replaced; `redrawn` counts them). The matrix comes from
`numpy.random.default_rng(seed)` and is saved, so the replicates do not depend on the numpy
version that reads them. The native walk reads the matrix itself; nothing else is materialised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cxrfast.atomic import atomic_path
from cxrfast.errors import DataError
from cxrfast.eval.labelled_scores import as_findings, known_rows

CHUNK = 256  # replicates materialised at a time


def _pick(pool: np.ndarray, random: np.ndarray) -> np.ndarray:
    """Units of `pool` for uniform uint32 `random`: ⌊random · len(pool) / 2³²⌋."""
    return pool[(random.astype(np.uint64) * np.uint64(len(pool))) >> np.uint64(32)]


@dataclass(frozen=True)
class Resamples:
    units: np.ndarray  # int64 (N,): each image's unit
    random: np.ndarray  # uint32 (B, U): the one matrix every replicate is read from
    case_pools: tuple[np.ndarray, ...]  # per finding, int64: its case units (empty: no AUROC)
    control_pools: tuple[np.ndarray, ...]  # per finding, int64: its control units
    findings: tuple[str, ...]
    seed: int
    clustered: bool
    redrawn: int

    @property
    def replicates(self) -> int:
        return self.random.shape[0]

    @property
    def unit_count(self) -> int:
        return self.random.shape[1]

    def finding_pools(self, f: int) -> list[tuple[np.ndarray, int]]:
        """Finding f's pools and the first column each reads: its cases, then its controls (none
        when it lacks a class: no AUROC to resample)."""
        cases, controls = self.case_pools[f], self.control_pools[f]
        return [(cases, 0), (controls, len(cases))] if len(cases) and len(controls) else []

    def joint_pools(self) -> list[tuple[np.ndarray, int]]:
        return [(np.arange(self.unit_count, dtype=np.int64), 0)]

    def draws(self, pools: list[tuple[np.ndarray, int]], rows: slice = slice(None)) -> np.ndarray:
        """int64 (b, M): the units replicates `rows` draw from `pools`, materialised."""
        random = self.random[rows]
        return np.concatenate([np.zeros((len(random), 0), np.int64)]
                              + [_pick(pool, random[:, column:column + len(pool)]) for pool, column in pools], axis=1)

    def chunks(self):
        """Slices of at most CHUNK replicates, covering them all in order."""
        return [slice(start, min(start + CHUNK, self.replicates)) for start in range(0, self.replicates, CHUNK)]

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        pools = {f"{kind}_{k}": pool for kind, pools in (("cases", self.case_pools), ("controls", self.control_pools))
                 for k, pool in enumerate(pools)}
        with atomic_path(path) as temporary, open(temporary, "wb") as f:
            np.savez_compressed(f, units=self.units, random=self.random, findings=np.array(self.findings, dtype=str),
                                seed=self.seed, clustered=self.clustered, redrawn=self.redrawn, **pools)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Resamples:
        try:
            with np.load(path, allow_pickle=False) as data:
                findings = tuple(str(f) for f in data["findings"])
                return cls(data["units"], data["random"], tuple(data[f"cases_{k}"] for k in range(len(findings))),
                           tuple(data[f"controls_{k}"] for k in range(len(findings))), findings, int(data["seed"]),
                           bool(data["clustered"]), int(data["redrawn"]))
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{path}: not a saved set of bootstrap replicates ({e})") from e


def image_units(patients: Sequence[str] | None, count: int, cluster: bool | None) -> tuple[np.ndarray, bool]:
    """Each image's unit and whether units are patients: by default patients when one has several images."""
    if patients is None:
        if cluster:
            raise DataError("cluster=True needs each image's patient")
        return np.arange(count, dtype=np.int64), False
    if len(patients) != count:
        raise DataError(f"{len(patients)} patients for {count} images")
    _, units = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    units = units.astype(np.int64)
    several = len(np.unique(units)) < count
    clustered = several if cluster is None else bool(cluster)
    return (units if clustered else np.arange(count, dtype=np.int64)), clustered


def draw_resamples(targets, known=None, patients: Sequence[str] | None = None, replicates: int = 2000,
                   seed: int = 0, cluster: bool | None = None, findings: Sequence[str] | None = None) -> Resamples:
    """Replicates of the images whose (N,) or (N, F) `targets` (1, 0, unknown −1/NaN) are given."""
    targets, known = as_findings(targets, "targets"), known_rows(targets, known)
    count, n_findings = targets.shape
    findings = tuple(findings) if findings is not None else tuple(f"finding {f}" for f in range(n_findings))
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1, not {replicates}")
    units, clustered = image_units(patients, count, cluster)
    unit_count = int(units.max()) + 1 if count else 0
    case_pools, control_pools = [], []
    for f in range(n_findings):
        rows = known[:, f]
        cases = np.unique(units[rows & (targets[:, f] == 1)])
        controls = np.setdiff1d(np.unique(units[rows]), cases)
        case_pools.append(cases)
        control_pools.append(controls)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    random = rng.integers(0, 2**32, size=(replicates, unit_count), dtype=np.uint32)
    resamples = Resamples(units, random, tuple(case_pools), tuple(control_pools), findings, seed, clustered, 0)
    return _keep_classes(resamples, targets, known, rng)


def _keep_classes(resamples: Resamples, targets, known, rng) -> Resamples:
    """Draw again each joint replicate in which a finding with both classes lost one."""
    units, unit_count = resamples.units, resamples.unit_count
    cases = np.zeros((unit_count, targets.shape[1]))
    controls = np.zeros((unit_count, targets.shape[1]))
    np.add.at(cases, units, known & (targets == 1))
    np.add.at(controls, units, known & (targets == 0))
    defined = (cases.sum(0) > 0) & (controls.sum(0) > 0)
    redrawn = 0
    for rows in resamples.chunks():
        todo = np.arange(rows.start, rows.stop)
        while len(todo):  # ends: a replicate keeps any one unit with probability 1 − (1 − 1/U)^U > 1 − 1/e
            draws = _pick(np.arange(unit_count, dtype=np.int64), resamples.random[todo])  # the joint pool
            counts = np.stack([np.bincount(row, minlength=unit_count) for row in draws]).astype(np.float64)
            todo = todo[((counts @ cases == 0) | (counts @ controls == 0))[:, defined].any(axis=1)]
            resamples.random[todo] = rng.integers(0, 2**32, size=(len(todo), unit_count), dtype=np.uint32)
            redrawn += len(todo)
    return replace(resamples, redrawn=redrawn)
