"""`predictions.csv`: what a fine-tuned model said about each validation and test image, the one
schema the evaluation reads.

One row per image: `image` (its name in the dataset), `patient_id`, `split`, then per finding
`<finding> score` (the model's probability, written to round-trip exactly) and `<finding> target`
(the label as the source gave it: 1, 0, -1 for uncertain, blank for missing). Unknown labels stay
unknown here; the evaluation decides (U-Ignore leaves them out of a finding's AUROC).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_text_atomically
from cxrfast.data.labels.csv_rows import check_new, parse_label, read_rows
from cxrfast.errors import DataError

SCORE, TARGET = " score", " target"
IDENTITY = ("image", "patient_id", "split")


@dataclass(frozen=True)
class Predictions:
    images: list[str]
    patients: list[str]
    splits: list[str]
    findings: tuple[str, ...]
    scores: np.ndarray  # (images, findings) float64
    targets: np.ndarray  # (images, findings) float32: 1, 0, -1 (uncertain), NaN (missing)

    def __post_init__(self) -> None:
        n, f = len(self.images), len(self.findings)
        if not (len(self.patients) == len(self.splits) == n and self.scores.shape == self.targets.shape == (n, f)):
            raise ValueError(f"{n} images and {f} findings need {n} patients and splits and ({n}, {f}) scores and "
                             f"targets, not {len(self.patients)}, {len(self.splits)}, {self.scores.shape}, "
                             f"{self.targets.shape}")

    def known(self) -> tuple[np.ndarray, np.ndarray]:
        """(targets as 0/1, mask of the labels that are 1 or 0)."""
        mask = (self.targets == 0) | (self.targets == 1)
        return np.where(mask, self.targets, 0).astype(np.float64), mask

    def split(self, name: str) -> Predictions:
        rows = [k for k, s in enumerate(self.splits) if s == name]
        return Predictions([self.images[k] for k in rows], [self.patients[k] for k in rows], [name] * len(rows),
                           self.findings, self.scores[rows], self.targets[rows])

    def write(self, path: str | os.PathLike) -> Path:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*IDENTITY, *(name + column for name in self.findings for column in (SCORE, TARGET))])
        for k, image in enumerate(self.images):
            cells = [image, self.patients[k], self.splits[k]]
            for f in range(len(self.findings)):
                target = self.targets[k, f]
                cells += [repr(float(self.scores[k, f])), "" if math.isnan(target) else str(int(target))]
            writer.writerow(cells)
        return write_text_atomically(path, out.getvalue())

    @classmethod
    def read(cls, path: str | os.PathLike) -> Predictions:
        findings = _findings(path)
        columns = [name + column for name in findings for column in (SCORE, TARGET)]
        images, patients, splits, scores, targets = [], [], [], [], []
        seen: dict[str, int] = {}
        for line, row in read_rows(path, (*IDENTITY, *columns)):
            check_new(seen, f"{row['split']}/{row['image']}", path, line, "image")
            images.append(row["image"])
            patients.append(row["patient_id"])
            splits.append(row["split"])
            scores.append([_score(row[name + SCORE], path, line, name + SCORE) for name in findings])
            targets.append([parse_label(row[name + TARGET], path, line, name + TARGET) for name in findings])
        if not images:
            raise DataError(f"{path}: holds no predictions")
        return cls(images, patients, splits, findings, np.array(scores, np.float64),
                   np.array(targets, np.float32))


def _findings(path: str | os.PathLike) -> tuple[str, ...]:
    """The findings the header names, each with its score and its target column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read as predictions ({e})") from e
    scored = [c[: -len(SCORE)] for c in header if c.endswith(SCORE)]
    unpaired = [c for c in header if c.endswith(TARGET) and c[: -len(TARGET)] not in scored]
    unpaired += [name + SCORE for name in scored if name + TARGET not in header]
    if unpaired or not scored:
        raise DataError(f"{path}: line 1: " + (f"column(s) {', '.join(map(repr, unpaired))} without their pair"
                                               if unpaired else "no '<finding> score' column"))
    return tuple(scored)


def _score(text: str, path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: line {line}: {column} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}: {column} is {text!r}; a score must be finite")
    return value

