"""NIH ChestX-ray14's labels: Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv) and the
official train_val_list.txt / test_list.txt.

`Finding Labels` is "No Finding" or findings joined by "|"; labels are text-mined and binary, so
nothing is uncertain or missing. The header splits "OriginalImage[Width,Height]" into two fields
at its comma, and the 2017 file ends every line with a comma; only named columns are read, so both
files read alike. With the lists, the split is "train" for train_val_list.txt (the official
training pool, validation included) and "test" for test_list.txt; images named in neither are
listed as skipped, and so are list entries with no row in the CSV. Findings are named by the
vocabulary (`cxrfast.data.labels.findings`): NIH's "Effusion" is "Pleural Effusion" in the table.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import numpy as np

from cxrfast.data.labels.csv_rows import check_new, read_rows
from cxrfast.data.labels.findings import NIH_SPELLINGS
from cxrfast.data.labels.table import LabelTable, SkippedRow, warn_skipped
from cxrfast.errors import DataError

# As Finding Labels spells them, in the order of NIH's papers; FINDINGS are the table's names.
NIH_NAMES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
             "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
FINDINGS = tuple(NIH_SPELLINGS.get(name, name) for name in NIH_NAMES)
NO_FINDING = "No Finding"


def _read_list(path: str | os.PathLike, name: str, lines: dict[str, tuple[str, str, int]]) -> None:
    """Add each image file name of an official list to `lines` (image -> split, list, line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read ({e})") from e
    for line, image in enumerate(text.splitlines(), 1):
        image = image.strip()
        if not image:
            continue
        if image in lines:
            _, other, other_line = lines[image]
            raise DataError(f"{path}: line {line}: {image} is already listed in {other}: line {other_line}")
        lines[image] = name, os.fspath(path), line


def _parse_findings(text: str, path, line: int) -> list[float]:
    if text == NO_FINDING:
        return [0.0] * len(NIH_NAMES)
    names = text.split("|")
    unknown = [name for name in names if name not in NIH_NAMES]
    if unknown:
        raise DataError(f"{path}: line {line}: Finding Labels {text!r} names {', '.join(map(repr, unknown))}; known: "
                        f"{NO_FINDING!r} alone or {', '.join(NIH_NAMES)}")
    return [float(name in names) for name in NIH_NAMES]


def read_nih(data_entry: str | os.PathLike, train_val_list: str | os.PathLike | None = None,
             test_list: str | os.PathLike | None = None, image_dir: str = "") -> LabelTable:
    """The labels of `data_entry`; image paths are `image_dir/<Image Index>`. Give both lists or neither."""
    if (train_val_list is None) != (test_list is None):
        raise ValueError("give both train_val_list and test_list, or neither")
    official = train_val_list is not None
    listed: dict[str, tuple[str, str, int]] = {}
    if official:
        _read_list(train_val_list, "train", listed)
        _read_list(test_list, "test", listed)

    paths, patients, views, split, values, skipped = [], [], [], [], [], []
    seen: dict[str, int] = {}
    for line, row in read_rows(data_entry, ("Image Index", "Finding Labels", "Patient ID", "View Position")):
        image = row["Image Index"]
        if not image or not row["Patient ID"]:
            raise DataError(f"{data_entry}: line {line}: Image Index and Patient ID must not be blank")
        check_new(seen, image, data_entry, line, "Image Index")
        labels = _parse_findings(row["Finding Labels"], data_entry, line)
        if official:
            if image not in listed:
                skipped.append(SkippedRow(os.fspath(data_entry), line, f"{image} is in neither {train_val_list} nor "
                                                                         f"{test_list}"))
                continue
            split.append(listed[image][0])
        paths.append(posixpath.join(image_dir, image))
        patients.append(row["Patient ID"])
        views.append(row["View Position"].upper() or None)
        values.append(labels)
    skipped += [SkippedRow(list_path, line, f"{image} has no row in {data_entry}")
                for image, (_, list_path, line) in listed.items() if image not in seen]
    warn_skipped(skipped)
    return LabelTable(paths=paths, patients=patients, views=views, findings=FINDINGS,
                      values=np.array(values, np.float32).reshape(-1, len(FINDINGS)),
                      split=split if official else None, skipped=tuple(skipped))
