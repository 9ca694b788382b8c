"""MIMIC-CXR-JPG's labels: per-study CheXpert (or NegBio) labels joined to its images.

mimic-cxr-2.0.0-chexpert.csv (or -negbio.csv) labels studies; mimic-cxr-2.0.0-metadata.csv
lists the images with their view; mimic-cxr-2.0.0-split.csv gives each image's official split.
Each image takes its study's labels, in CheXpert's column order (the labeller and the names are
CheXpert's), so MIMIC and CheXpert tables concatenate. Some studies have images but no label
row: their images are kept with every label NaN. Label rows of studies without images are listed
as skipped.
"""

from __future__ import annotations

import math
import os

import numpy as np

from cxrfast.data.labels.csv_rows import check_new, parse_label, read_rows
from cxrfast.data.labels.findings import CHEXPERT_FINDINGS as FINDINGS
from cxrfast.data.labels.table import LabelTable, SkippedRow, warn_skipped
from cxrfast.errors import DataError

SPLITS = ("train", "validate", "test")


def _ids(row: dict[str, str], path, line: int) -> tuple[str, str]:
    """subject_id and study_id, which must be plain integers to build the image path."""
    for name in ("subject_id", "study_id"):
        if not row[name].isdigit():
            raise DataError(f"{path}: line {line}: {name} is {row[name]!r}, not an integer")
    return row["subject_id"], row["study_id"]


def read_mimic(labels: str | os.PathLike, metadata: str | os.PathLike, split: str | os.PathLike) -> LabelTable:
    """One row per image of `metadata`, labelled from `labels`, with the split from `split`."""
    studies: dict[str, tuple[str, list[float]]] = {}  # study -> subject, labels
    label_lines: dict[str, int] = {}
    for line, row in read_rows(labels, ("subject_id", "study_id", *FINDINGS)):
        subject, study = _ids(row, labels, line)
        check_new(label_lines, study, labels, line, "study_id")
        studies[study] = subject, [parse_label(row[name], labels, line, name) for name in FINDINGS]

    official: dict[str, tuple[str, str, str]] = {}  # dicom -> subject, study, split
    split_lines: dict[str, int] = {}
    for line, row in read_rows(split, ("dicom_id", "subject_id", "study_id", "split")):
        if row["split"] not in SPLITS:
            raise DataError(f"{split}: line {line}: split is {row['split']!r}, not one of {', '.join(SPLITS)}")
        check_new(split_lines, row["dicom_id"], split, line, "dicom_id")
        official[row["dicom_id"]] = (*_ids(row, split, line), row["split"])

    paths, patients, study_ids, views, splits, values = [], [], [], [], [], []
    seen: dict[str, int] = {}
    unlabelled = [math.nan] * len(FINDINGS)
    for line, row in read_rows(metadata, ("dicom_id", "subject_id", "study_id", "ViewPosition")):
        subject, study = _ids(row, metadata, line)
        dicom = row["dicom_id"]
        check_new(seen, dicom, metadata, line, "dicom_id")
        if dicom not in official:
            raise DataError(f"{metadata}: line {line}: dicom_id {dicom!r} is not in {split}")
        if official[dicom][:2] != (subject, study):
            raise DataError(f"{metadata}: line {line}: dicom_id {dicom!r} belongs to subject {subject}, study {study} "
                            f"here but to subject {official[dicom][0]}, study {official[dicom][1]} in {split}")
        if study in studies and studies[study][0] != subject:
            raise DataError(f"{metadata}: line {line}: study {study} belongs to subject {subject} here but to subject "
                            f"{studies[study][0]} in {labels}")
        paths.append(f"files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg")
        patients.append(subject)
        study_ids.append(study)
        views.append(row["ViewPosition"].upper() or None)
        splits.append(official[dicom][2])
        values.append(studies[study][1] if study in studies else unlabelled)

    imaged = set(study_ids)
    skipped = [SkippedRow(os.fspath(labels), line, f"study {study} has no image in {metadata}")
               for study, line in label_lines.items() if study not in imaged]
    skipped += [SkippedRow(os.fspath(split), line, f"dicom_id {dicom!r} is not in {metadata}")
                for dicom, line in split_lines.items() if dicom not in seen]
    warn_skipped(skipped)
    return LabelTable(paths=paths, patients=patients, views=views, findings=FINDINGS,
                      values=np.array(values, np.float32).reshape(-1, len(FINDINGS)), studies=study_ids,
                      split=splits, skipped=tuple(skipped))
