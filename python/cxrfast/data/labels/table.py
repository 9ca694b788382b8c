"""The common in-memory form of a chest X-ray dataset's labels: one row per image, one column
per finding, whichever dataset it was read from.

Values follow the CheXpert labeller's convention: 1 positive, 0 negative, -1 uncertain, NaN
not mentioned. What an uncertain label becomes when training is the uncertainty policy of the
CheXpert paper (Irvin et al., 2019): "ignore" (U-Ignore) leaves it out of the loss, "zeros"
(U-Zeros) counts it negative, "ones" (U-Ones) positive.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cxrfast.atomic import atomic_path
from cxrfast.data.labels.csv_rows import check_new, parse_label, read_rows
from cxrfast.data.labels.findings import FINDINGS
from cxrfast.errors import DataError

POLICIES = ("ignore", "zeros", "ones")

Box = tuple[float, float, float, float]  # x, y, width, height in pixels, from the top-left corner
_PER_IMAGE = ("paths", "patients", "views", "studies", "split", "boxes")  # the list columns, one entry per image


@dataclass(frozen=True)
class SkippedRow:
    """A line of a label file that produced no image row, and why."""

    file: str
    line: int
    reason: str


@dataclass(frozen=True, eq=False)
class LabelTable:
    """Labels of `len(paths)` images.

    `paths` are relative to the dataset root; `views` are upper-case ("PA", "AP", "LATERAL",
    "LL", ...) or None when the file does not say. `values` is float32 (images, findings).
    Optional columns are None when the dataset has nothing for them: `studies`, `split` (the
    dataset's own "train" / "validate" / "test"), `boxes` (per image, empty when negative).
    `skipped` lists the source lines left out while reading, so that none is lost silently.
    """

    paths: list[str]
    patients: list[str]
    views: list[str | None]
    findings: tuple[str, ...]
    values: np.ndarray
    studies: list[str] | None = None
    split: list[str] | None = None
    boxes: list[list[Box]] | None = None
    skipped: tuple[SkippedRow, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.paths)
        for name in _PER_IMAGE:
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"{name} has {len(column)} entries for {n} images")
        if self.values.dtype != np.float32 or self.values.shape != (n, len(self.findings)):
            raise ValueError(f"values must be float32 of shape {(n, len(self.findings))}, not "
                             f"{self.values.dtype} {self.values.shape}")
        v = self.values
        if not np.all(np.isnan(v) | (v == 1) | (v == 0) | (v == -1)):
            raise ValueError("values must be 1, 0, -1 or NaN")

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices: Sequence[int] | np.ndarray) -> LabelTable:
        """The rows at `indices`, in that order."""
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        picked = {name: None if (column := getattr(self, name)) is None else [column[i] for i in rows]
                  for name in _PER_IMAGE}
        return replace(self, values=self.values[rows], **picked)

    def select_findings(self, findings: Sequence[str]) -> LabelTable:
        """The table with only the columns `findings`, in that order."""
        missing = [name for name in findings if name not in self.findings]
        if missing:
            raise ValueError(f"no finding(s) {missing} in this table: {self.findings}")
        columns = [self.findings.index(name) for name in findings]
        return replace(self, findings=tuple(findings), values=self.values[:, columns])

    def filter_views(self, views: str | Iterable[str]) -> LabelTable:
        """The images taken in one of `views` (case-insensitive); images of unknown view are left out."""
        wanted = {views.upper()} if isinstance(views, str) else {v.upper() for v in views}
        return self.take([i for i, view in enumerate(self.views) if view in wanted])

    def targets(self, policy: str = "ignore", per_finding: Mapping[str, str] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Training targets (float32, 0 or 1) and the mask of the ones that count (bool), both
        (images, findings). Unmentioned labels are masked out; uncertain ones follow `policy`,
        or `per_finding[name]` for the findings it names. The CheXpert baseline, for example,
        is `targets("zeros", per_finding={"Atelectasis": "ones", "Edema": "ones"})`."""
        chosen = [policy] * len(self.findings)
        for name, finding_policy in (per_finding or {}).items():
            if name not in self.findings:
                raise ValueError(f"per_finding names {name!r}, which is not a finding of this table: {self.findings}")
            chosen[self.findings.index(name)] = finding_policy
        for name in chosen:
            if name not in POLICIES:
                raise ValueError(f"unknown uncertainty policy {name!r}; allowed: {', '.join(POLICIES)}")
        ones = np.array([p == "ones" for p in chosen], bool)
        ignored = np.array([p == "ignore" for p in chosen], bool)
        known = ~np.isnan(self.values)
        uncertain = self.values == -1
        targets = np.where(uncertain, ones.astype(np.float32), np.where(known, self.values, 0)).astype(np.float32)
        return targets, known & ~(uncertain & ignored)

    def write_manifest(self, path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
        """A manifest CSV of these images for `cxrfast prepare` and the linear probe: `path`
        (relative to the CSV's folder; give `root`, the dataset folder the paths are relative to,
        when the CSV lives elsewhere), `patient_id`, `view_position`, then one column per finding
        with 1, 0, -1 or blank, and `split` when the table has the dataset's own. Written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        base = Path(os.path.relpath(root, path.parent)) if root is not None else Path()
        with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            split = ["split"] if self.split is not None else []
            writer.writerow(["path", "patient_id", "view_position", *split, *self.findings])
            for k, image in enumerate(self.paths):
                labels = ["" if np.isnan(v) else str(int(v)) for v in self.values[k]]
                split = [self.split[k]] if self.split is not None else []
                writer.writerow([(base / image).as_posix(), self.patients[k], self.views[k] or "", *split, *labels])
        return path

    @classmethod
    def read_manifest(cls, path: str | os.PathLike, findings: Sequence[str] | None = None, *,
                      path_column: str = "path") -> LabelTable:
        """The table of a manifest CSV: `write_manifest`'s, one written by hand, or a prepared
        cache's manifest.csv (whose images are named in its "name" column: `path_column="name"`).
        Each row has its image in `path_column` (kept as written), optionally `patient_id` (else
        the image is its own patient), `view_position` and `split` (the dataset's own: train,
        validate, test), and the columns `findings` holding 1, 0, -1 or blank; by default every
        column named in the findings vocabulary (`[]`: none, for images that carry only masks)."""
        chosen = None if findings is None else tuple(findings)
        optional = ("patient_id", "view_position", "split", *(FINDINGS if chosen is None else ()))
        paths, patients, views, values, split = [], [], [], [], []
        seen: dict[str, int] = {}
        for line, row in read_rows(path, (path_column, *(chosen or ())), optional):
            if chosen is None:
                chosen = tuple(name for name in row if name in FINDINGS)
            if not chosen and findings is None:
                raise DataError(f"{path}: no finding columns: none is named as in the findings vocabulary "
                                f"({', '.join(FINDINGS)}); name the columns to read")
            image = row[path_column]
            if not image:
                raise DataError(f"{path}: line {line}: {path_column} is blank")
            check_new(seen, image, path, line, path_column)
            paths.append(image)
            patients.append(row.get("patient_id") or image)
            views.append(row.get("view_position", "").upper() or None)
            if "split" in row:
                if not row["split"]:
                    raise DataError(f"{path}: line {line}: split is blank; name each image's split or drop the column")
                split.append(row["split"])
            values.append([parse_label(row[name], path, line, name) for name in chosen])
        if not paths:
            raise DataError(f"{path}: lists no images")
        return cls(paths=paths, patients=patients, views=views, findings=chosen,
                   values=np.array(values, np.float32).reshape(len(paths), len(chosen)), split=split or None)

    @classmethod
    def concat(cls, tables: Sequence[LabelTable]) -> LabelTable:
        """One table holding the rows of `tables` in order (e.g. CheXpert's train.csv and valid.csv)."""
        if not tables:
            raise ValueError("concat needs at least one table")
        first = tables[0]
        if any(t.findings != first.findings for t in tables):
            raise ValueError("tables to concatenate must have the same findings in the same order")
        joined = {}
        for name in _PER_IMAGE:
            parts = [getattr(t, name) for t in tables]
            if all(p is None for p in parts):
                joined[name] = None
            elif any(p is None for p in parts):
                raise ValueError(f"some tables have {name} and some do not")
            else:
                joined[name] = [x for p in parts for x in p]
        return cls(findings=first.findings, values=np.concatenate([t.values for t in tables]),
                   skipped=sum((t.skipped for t in tables), ()), **joined)


def warn_skipped(skipped: Sequence[SkippedRow]) -> None:
    """Say how many lines were left out and show the first, so that a reader never drops rows unnoticed."""
    if skipped:
        first = skipped[0]
        warnings.warn(f"{len(skipped)} label line(s) produced no image, e.g. {first.file}: line {first.line}: "
                      f"{first.reason}; all are listed in LabelTable.skipped", stacklevel=3)
