"""Bootstrap replicates of one test set, drawn once and shared by every model compared, so that a
paired comparison sees each model on the very same resamples; saved with the results, so it can
be rerun, or extended to another model, on them.

A replicate draws units with replacement: images, or, when a patient has several images,
patients (each drawn patient brings all its images; "clustered"). Each finding's replicates are
stratified by its class, as pROC's are: its case units (a patient with any known positive image
for it) and its control units are drawn separately, so every replicate keeps their numbers and
never loses a class. The mean AUROC over findings needs every finding on the same replicate (the
findings' errors are correlated through the images), so it has joint replicates of all units; a
joint replicate in which some finding lost a class is drawn again, and `redrawn` counts them.
Seeds come from one `numpy.random.SeedSequence(seed)`, spawned per finding: the same seed gives
the same replicates on any machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrfast.atomic import atomic_path
from cxrfast.errors import DataError
from cxrfast.eval.labelled_scores import as_findings, known_rows

_CHUNK = 256  # joint replicates checked at a time (their unit counts are B × U integers)


@dataclass(frozen=True)
class Resamples:
    units: np.ndarray  # int64 (N,): each image's unit
    finding_draws: tuple[np.ndarray, ...]  # per finding, int64 (B, M_f): units drawn, stratified by class
    joint_draws: np.ndarray  # int64 (B, U): units drawn for every finding at once
    findings: tuple[str, ...]
    seed: int
    clustered: bool
    redrawn: int

    @property
    def replicates(self) -> int:
        return self.joint_draws.shape[0]

    @property
    def unit_count(self) -> int:
        return int(self.units.max()) + 1 if len(self.units) else 0

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        with atomic_path(path) as temporary, open(temporary, "wb") as f:
            np.savez_compressed(f, units=self.units, joint_draws=self.joint_draws, findings=np.array(self.findings),
                                seed=self.seed, clustered=self.clustered, redrawn=self.redrawn,
                                **{f"finding_draws_{k}": d for k, d in enumerate(self.finding_draws)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Resamples:
        try:
            with np.load(path, allow_pickle=False) as data:
                findings = tuple(str(f) for f in data["findings"])
                return cls(data["units"], tuple(data[f"finding_draws_{k}"] for k in range(len(findings))),
                           data["joint_draws"], findings, int(data["seed"]), bool(data["clustered"]),
                           int(data["redrawn"]))
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


def _draw(pool: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    return pool[rng.integers(0, len(pool), size=(replicates, len(pool)))]


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
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n_findings + 1)]
    finding_draws = []
    for f in range(n_findings):
        rows = known[:, f]
        case_units = np.unique(units[rows & (targets[:, f] == 1)])
        control_units = np.setdiff1d(np.unique(units[rows]), case_units)
        if not len(case_units) or not len(control_units):
            finding_draws.append(np.zeros((replicates, 0), np.int64))  # no AUROC to resample
            continue
        finding_draws.append(np.concatenate([_draw(case_units, replicates, streams[f]),
                                             _draw(control_units, replicates, streams[f])], axis=1))
    joint, redrawn = _joint(units, unit_count, targets, known, replicates, streams[-1])
    return Resamples(units, tuple(finding_draws), joint, findings, seed, clustered, redrawn)


def _joint(units, unit_count, targets, known, replicates, rng) -> tuple[np.ndarray, int]:
    """Joint replicates of all units in which every finding that has both classes keeps both."""
    cases = np.zeros((unit_count, targets.shape[1]))
    controls = np.zeros((unit_count, targets.shape[1]))
    np.add.at(cases, units, known & (targets == 1))
    np.add.at(controls, units, known & (targets == 0))
    defined = (cases.sum(0) > 0) & (controls.sum(0) > 0)
    pool = np.arange(unit_count, dtype=np.int64)
    joint = np.empty((replicates, unit_count), np.int64)
    redrawn = 0
    for start in range(0, replicates, _CHUNK):
        todo = np.arange(start, min(start + _CHUNK, replicates))
        while len(todo):  # ends: a replicate keeps any one unit with probability 1 − (1 − 1/U)^U > 1 − 1/e
            joint[todo] = _draw(pool, len(todo), rng)
            counts = np.stack([np.bincount(row, minlength=unit_count) for row in joint[todo]]).astype(np.float64)
            todo = todo[((counts @ cases == 0) | (counts @ controls == 0))[:, defined].any(axis=1)]
            redrawn += len(todo)
    return joint, redrawn
