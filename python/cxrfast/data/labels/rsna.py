"""The RSNA Pneumonia Detection Challenge's stage_2_train_labels.csv.

One image (`<patientId>.dcm`) per patientId, with one row per lung-opacity box when Target is 1
and a single row with blank box fields when it is 0. The finding "Pneumonia" is Target; the boxes
are kept per image. The file records no view (it is in the DICOM header) and no study, and the
patientId is the image's only identity, so patient-level splits of this table are per image.
"""

from __future__ import annotations

import os
import posixpath

import numpy as np

from cxrfast.data.labels.csv_rows import read_rows
from cxrfast.data.labels.table import Box, LabelTable
from cxrfast.errors import DataError

FINDINGS = ("Pneumonia",)
_BOX = ("x", "y", "width", "height")


def _box(row: dict[str, str], path, line: int) -> Box:
    if not any(row[name] for name in _BOX):
        raise DataError(f"{path}: line {line}: Target is 1 but the box fields are blank")
    try:
        x, y, width, height = (float(row[name]) for name in _BOX)
    except ValueError:
        raise DataError(f"{path}: line {line}: box ({', '.join(row[name] for name in _BOX)}) is not four "
                        "numbers") from None
    if not (width > 0 and height > 0):
        raise DataError(f"{path}: line {line}: box {x, y, width, height} has no area")
    return x, y, width, height


def read_rsna(path: str | os.PathLike, image_dir: str = "") -> LabelTable:
    """The labels of stage_2_train_labels.csv; image paths are `image_dir/<patientId>.dcm`."""
    images: dict[str, tuple[int, int, list[Box]]] = {}  # patientId -> Target, first line, boxes; in file order
    for line, row in read_rows(path, ("patientId", *_BOX, "Target")):
        patient, target = row["patientId"], row["Target"]
        if not patient:
            raise DataError(f"{path}: line {line}: patientId is blank")
        if target not in ("0", "1"):
            raise DataError(f"{path}: line {line}: Target is {target!r}, not 0 or 1")
        target = int(target)
        if patient in images:
            first_target, first_line, _ = images[patient]
            if not (target and first_target):
                raise DataError(f"{path}: line {line}: patientId {patient} already appears on line {first_line}; only "
                                "positive images have several rows (one per box)")
        else:
            images[patient] = target, line, []
        if target:
            images[patient][2].append(_box(row, path, line))
        elif any(row[name] for name in _BOX):
            raise DataError(f"{path}: line {line}: Target is 0 but the box fields are not blank")
    return LabelTable(paths=[posixpath.join(image_dir, f"{patient}.dcm") for patient in images], patients=list(images),
                      views=[None] * len(images), findings=FINDINGS,
                      values=np.array([[target] for target, _, _ in images.values()], np.float32).reshape(-1, 1),
                      boxes=[boxes for _, _, boxes in images.values()])
