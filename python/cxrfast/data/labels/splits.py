"""Patient-level splits and nested label-fraction subsets of a `LabelTable`.

Every image of a patient goes to the same split or subset, so that no patient is seen in both
training and evaluation. All draws come from `numpy.random.default_rng(seed)` over the patients
in sorted order, so a seed gives the same result whatever the row order.

Label-fraction subsets ("fine-tune on 1% / 10% / 100% of the labels") are prefixes of one
ordering of the pool's patients, hence nested. The ordering is built in two steps:

1. Coverage: findings taken from the rarest (fewest positive patients) to the most common; for
   each one not yet covered, the first patient in a seeded shuffle positive for it is added. So
   every subset holds a positive of every finding the pool has one of, even when that makes the
   smallest subset larger than its fraction.
2. Balance: patients are then added one at a time, each chosen among `DRAWN` unused patients
   drawn at random and the next unused patient positive for each finding: the one that brings
   every finding's positive count c closest to its share p·n (p its prevalence among the pool's
   labelled images, n the subset's images labelled for it), by the sum over findings of
   max(|c - p·n| - 1, 0)^2 / max(p·n, 1). A chi-square-like sum, so rare and common findings
   weigh alike; being one image off is free, as no subset can beat rounding and a rare finding's
   covering positive must not drive the choice. Ties go to the random draws.

A subset for fraction f is the shortest prefix (and at least the coverage step) holding f of the
pool's images; 1.0 is the whole pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from cxrfast.data.labels.table import LabelTable

DEFAULT_FRACTIONS = MappingProxyType({"train": 0.8, "validate": 0.1, "test": 0.1})
OFFICIAL_ORDER = ("train", "validate", "test")
DRAWN = 16  # random candidates per step, beside each finding's next positive


def _patients(table: LabelTable, rows: np.ndarray) -> tuple[int, np.ndarray]:
    """The number of distinct patients among `rows` and each row's patient number (sorted ids)."""
    ids, inverse = np.unique(np.array([table.patients[i] for i in rows], dtype=str), return_inverse=True)
    return len(ids), inverse.reshape(-1)


def _per_patient(patient: np.ndarray, n_patients: int, per_image: np.ndarray) -> np.ndarray:
    """(images, findings) flags -> (patients, findings) counts."""
    counts = [np.bincount(patient, column, n_patients) for column in per_image.T]
    return np.stack(counts, axis=1) if counts else np.zeros((n_patients, 0))  # no findings: masks only


def _apportion(fractions: Sequence[float], n: int) -> np.ndarray:
    """Whole counts summing to `n` in the given proportions (largest remainders get the rest)."""
    exact = np.asarray(fractions, np.float64) * n
    counts = np.floor(exact).astype(np.int64)
    rest = np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]
    counts[rest] += 1
    return counts


def split_by_patient(table: LabelTable, fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices per split name, with `fractions` of the patients in each (rounded)."""
    values = list(fractions.values())
    if not values or min(values) < 0 or abs(sum(values) - 1) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, not {dict(fractions)}")
    n_patients, patient = _patients(table, np.arange(len(table)))
    shuffled = np.empty(n_patients, np.int64)
    shuffled[np.random.default_rng(seed).permutation(n_patients)] = np.arange(n_patients)  # each patient's rank
    bounds = np.cumsum(_apportion(values, n_patients))
    which = np.searchsorted(bounds, shuffled[patient], side="right")
    return {name: np.flatnonzero(which == k) for k, name in enumerate(fractions)}


def official_split(table: LabelTable) -> dict[str, np.ndarray]:
    """Row indices per split name of the dataset's own split (train, validate, test first)."""
    if table.split is None:
        raise ValueError("this table has no official split; use split_by_patient")
    split = np.array(table.split, dtype=str)
    known = {name: k for k, name in enumerate(OFFICIAL_ORDER)}
    names = sorted(set(table.split), key=lambda name: (known.get(name, len(known)), name))
    return {name: np.flatnonzero(split == name) for name in names}


def _stratified_order(positives: np.ndarray, labelled: np.ndarray, images: np.ndarray, images_needed: float,
                      rng: np.random.Generator) -> tuple[list[int], int]:
    """Patients in the order the subsets take them (see the module docstring), until they hold
    `images_needed` images, and how many the coverage step took."""
    n_patients, n_findings = positives.shape
    shuffled = rng.permutation(n_patients)
    prevalence = positives.sum(0) / np.maximum(labelled.sum(0), 1)
    queues = [shuffled[positives[shuffled, f] > 0] for f in range(n_findings)]
    heads = [0] * n_findings
    used = np.zeros(n_patients, bool)
    order: list[int] = []

    def head(f: int) -> int | None:
        """The next unused patient positive for finding f."""
        queue = queues[f]
        while heads[f] < len(queue) and used[queue[heads[f]]]:
            heads[f] += 1
        return int(queue[heads[f]]) if heads[f] < len(queue) else None

    for f in np.argsort([len(q) for q in queues], kind="stable"):  # rarest first
        if len(queues[f]) and not positives[order, f].any():
            patient = head(f)
            used[patient] = True
            order.append(patient)
    covered = len(order)

    taken, chosen_positives, chosen_labelled = images[order].sum(), positives[order].sum(0), labelled[order].sum(0)
    while taken < images_needed and len(order) < n_patients:
        unused = np.flatnonzero(~used)
        drawn = rng.choice(unused, min(DRAWN, len(unused)), replace=False)
        heads_now = [p for p in map(head, range(n_findings)) if p is not None]
        candidates = np.array(list(dict.fromkeys([*drawn.tolist(), *heads_now])))  # ties go to the random draws
        pos = chosen_positives + positives[candidates]
        lab = chosen_labelled + labelled[candidates]
        expected = prevalence * lab
        excess = np.maximum(np.abs(pos - expected) - 1, 0)
        best = int(candidates[np.argmin((excess ** 2 / np.maximum(expected, 1)).sum(1))])
        used[best] = True
        order.append(best)
        taken += images[best]
        chosen_positives += positives[best]
        chosen_labelled += labelled[best]
    return order, covered


def label_fraction_subsets(table: LabelTable, indices: Sequence[int] | np.ndarray,
                           fractions: Sequence[float] = (0.01, 0.1, 1.0), seed: int = 0, policy: str = "ignore",
                           per_finding: Mapping[str, str] | None = None) -> dict[float, np.ndarray]:
    """Nested, patient-level, stratified subsets of the rows `indices` (a training split): for each
    fraction, the sorted row indices of the subset. Positives are counted from the targets under
    `policy` / `per_finding` (see `LabelTable.targets`)."""
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1], not {tuple(fractions)}")
    rows = np.unique(np.asarray(indices, dtype=np.int64))
    if not len(rows):
        raise ValueError("no rows to draw label-fraction subsets from")
    targets, mask = table.targets(policy, per_finding)
    n_patients, patient = _patients(table, rows)
    positives = _per_patient(patient, n_patients, (targets[rows] == 1) & mask[rows])
    labelled = _per_patient(patient, n_patients, mask[rows])
    images = np.bincount(patient, minlength=n_patients)

    partial = [f for f in fractions if f < 1]
    order, covered = _stratified_order(positives, labelled, images, max(partial, default=0) * len(rows),
                                       np.random.default_rng(seed))
    taken = np.cumsum(images[order])
    subsets = {}
    for f in fractions:
        if f == 1:
            subsets[f] = rows
            continue
        size = max(covered, int(np.searchsorted(taken, f * len(rows))) + 1, 1)
        subsets[f] = rows[np.isin(patient, order[:size])]
    return subsets
