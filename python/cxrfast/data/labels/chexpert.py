"""CheXpert's label files (train.csv, valid.csv of CheXpert-v1.0 and CheXpert-v1.0-small).

One row per image. The patient, study and official split are read from the image path,
`<root>/<train|valid|test>/patientNNNNN/studyN/viewN_<frontal|lateral>.jpg`; study numbers
restart for each patient, so a study is named "patientNNNNN/studyN". The view is the AP/PA
column for frontal images (blank for some) and "LATERAL" for lateral ones.
"""

from __future__ import annotations

import os
import re

import numpy as np

from cxrfast.data.labels.csv_rows import check_new, parse_label, read_rows
from cxrfast.data.labels.findings import CHEXPERT_FINDINGS as FINDINGS
from cxrfast.data.labels.table import LabelTable
from cxrfast.errors import DataError

_PATH = re.compile(r"(?:^|/)(train|valid|test)/(patient\d+)/(study\d+)/[^/]+$")
_SPLITS = {"train": "train", "valid": "validate", "test": "test"}


def read_chexpert(path: str | os.PathLike) -> LabelTable:
    """The labels of one CheXpert CSV; `LabelTable.concat` joins train and valid."""
    paths, patients, studies, views, split, values = [], [], [], [], [], []
    seen: dict[str, int] = {}
    for line, row in read_rows(path, ("Path", "Frontal/Lateral", "AP/PA", *FINDINGS)):
        image = row["Path"]
        match = _PATH.search(image)
        if match is None:
            raise DataError(f"{path}: line {line}: Path {image!r} is not <root>/<train|valid|test>/patientNNNNN/"
                            "studyN/<image>")
        check_new(seen, image, path, line, "Path")
        kind = row["Frontal/Lateral"]
        if kind not in ("Frontal", "Lateral"):
            raise DataError(f"{path}: line {line}: Frontal/Lateral is {kind!r}, not Frontal or Lateral")
        folder, patient, study = match.groups()
        paths.append(image)
        patients.append(patient)
        studies.append(f"{patient}/{study}")
        views.append("LATERAL" if kind == "Lateral" else row["AP/PA"].upper() or None)
        split.append(_SPLITS[folder])
        values.append([parse_label(row[name], path, line, name) for name in FINDINGS])
    return LabelTable(paths=paths, patients=patients, views=views, findings=FINDINGS,
                      values=np.array(values, np.float32).reshape(-1, len(FINDINGS)), studies=studies, split=split)
