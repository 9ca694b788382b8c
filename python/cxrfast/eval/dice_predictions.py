"""`predictions_segmentation.csv`: a segmentation run's per-image Dice on its validation and test
images (`image`, `patient_id`, `split`, `dice`), blank where the ground truth is empty and there
is no Dice. Written by `cxrfast finetune --task segmentation`, read by the evaluation."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_text_atomically
from cxrfast.data.labels.csv_rows import check_new, read_rows
from cxrfast.errors import DataError

COLUMNS = ("image", "patient_id", "split", "dice")


@dataclass(frozen=True)
class DicePredictions:
    images: list[str]
    patients: list[str]
    splits: list[str]
    dice: np.ndarray  # float64 (N,), NaN where the ground truth is empty

    def split(self, name: str) -> DicePredictions:
        rows = [k for k, s in enumerate(self.splits) if s == name]
        return DicePredictions([self.images[k] for k in rows], [self.patients[k] for k in rows], [name] * len(rows),
                               self.dice[rows])

    def write(self, path: str | os.PathLike) -> Path:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for image, patient, split, dice in zip(self.images, self.patients, self.splits, self.dice.tolist()):
            writer.writerow([image, patient, split, "" if math.isnan(dice) else repr(dice)])
        return write_text_atomically(path, out.getvalue())

    @classmethod
    def read(cls, path: str | os.PathLike) -> DicePredictions:
        images, patients, splits, dice = [], [], [], []
        seen: dict[str, int] = {}
        for line, row in read_rows(path, COLUMNS):
            check_new(seen, f"{row['split']}/{row['image']}", path, line, "image")
            images.append(row["image"])
            patients.append(row["patient_id"])
            splits.append(row["split"])
            try:
                value = float(row["dice"]) if row["dice"] else math.nan
            except ValueError:
                raise DataError(f"{path}: line {line}: dice is {row['dice']!r}, not a number") from None
            if not (math.isnan(value) and not row["dice"]) and not 0 <= value <= 1:
                raise DataError(f"{path}: line {line}: dice {row['dice']!r} is outside [0, 1]")
            dice.append(value)
        if not images:
            raise DataError(f"{path}: holds no predictions")
        return cls(images, patients, splits, np.array(dice, np.float64))
