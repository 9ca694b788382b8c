"""Which labelled images a fine-tuning run trains on, selects its model on and tests on.

The dataset's own split (a `split` column: CheXpert's valid.csv, NIH's lists, MIMIC's split)
when the labels have one and `split` is "auto" or "official"; otherwise `split_by_patient`'s with
the configured fractions. An official split without a validation or test part has it carved from
its training part by patient, in the configured proportions. Either way a patient's images are on
one side only: an official split that puts a patient on two sides is refused, so nothing from a
test patient reaches training or model selection. The label fraction is then the nested,
stratified, patient-level subset of the training part (`label_fraction_subsets`), and `split.csv`
in the run names every image's part ("train", "unused": training images outside the fraction,
"validate", "test").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_text_atomically
from cxrfast.data.labels import LabelTable, label_fraction_subsets, official_split, split_by_patient
from cxrfast.errors import DataError
from cxrfast.train.config import FinetuneConfig

PARTS = ("train", "validate", "test")
SPLIT_FILE = "split.csv"


@dataclass(frozen=True)
class LabelledSplit:
    train: np.ndarray  # rows fine-tuned on: the label fraction of the training part
    unused: np.ndarray  # the training part's other rows
    validate: np.ndarray
    test: np.ndarray
    official: bool  # the dataset's own split, not one drawn here

    def write(self, table: LabelTable, path: Path) -> Path:
        part = np.empty(len(table), object)
        for name in ("train", "unused", "validate", "test"):
            part[getattr(self, name)] = name
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["image", "patient_id", "split"])
        for k in np.flatnonzero(part != None):  # noqa: E711 (elementwise over an object array)
            writer.writerow([table.paths[k], table.patients[k], part[k]])
        return write_text_atomically(path, out.getvalue())


def choose_split(table: LabelTable, labels_file: Path, config: FinetuneConfig) -> LabelledSplit:
    """The parts of `table` as `config` asks (`split`, `split_fractions`, `label_fraction`, `seed`,
    and the uncertainty policies the fraction's stratification counts positives under)."""
    split, fractions, seed = config.split, config.split_fractions, config.seed
    if set(fractions) != set(PARTS):
        raise DataError(f"split_fractions must name {', '.join(PARTS)}, not {', '.join(fractions)}")
    official = split != "patient" and table.split is not None
    if split == "official" and table.split is None:
        raise DataError(f"{labels_file}: split official, but the labels have no split column")
    if official:
        parts = official_split(table)
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise DataError(f"{labels_file}: split names {', '.join(map(repr, unknown))}; a split is one of "
                            f"{', '.join(PARTS)}")
        _check_patient_disjoint(table, parts, labels_file)
        parts = _carve_missing(table, parts, fractions, seed, labels_file)
    else:
        parts = split_by_patient(table, {name: fractions[name] for name in PARTS}, seed)
    for name in PARTS:
        if not len(parts[name]):
            raise DataError(f"{labels_file}: the {name} split is empty ({len(table)} images, "
                            f"{len(set(table.patients))} patients); label more images or change split_fractions")
    fraction = config.label_fraction
    train = label_fraction_subsets(table, parts["train"], (fraction,), seed, config.uncertainty,
                                   config.uncertainty_per_finding)[fraction]
    return LabelledSplit(train, np.setdiff1d(parts["train"], train), parts["validate"], parts["test"], official)


def _check_patient_disjoint(table: LabelTable, parts: Mapping[str, np.ndarray], labels_file: Path) -> None:
    seen: dict[str, str] = {}
    for name, rows in parts.items():
        for k in rows:
            patient = table.patients[k]
            if seen.setdefault(patient, name) != name:
                raise DataError(f"{labels_file}: patient {patient!r} is in both the {seen[patient]} and the {name} "
                                "split; a patient's images must all be on one side")


def _carve_missing(table: LabelTable, parts: dict[str, np.ndarray], fractions: Mapping[str, float], seed: int,
                   labels_file: Path) -> dict[str, np.ndarray]:
    """Validation and test parts the dataset lacks, drawn by patient from its training part."""
    missing = [name for name in ("validate", "test") if name not in parts]
    if not missing:
        return parts
    if "train" not in parts:
        raise DataError(f"{labels_file}: the split column has no train images")
    shares = {"train": fractions["train"], **{name: fractions[name] for name in missing}}
    total = sum(shares.values())
    train = parts["train"]
    drawn = split_by_patient(table.take(train), {name: share / total for name, share in shares.items()}, seed)
    return {**parts, **{name: train[rows] for name, rows in drawn.items()}}
