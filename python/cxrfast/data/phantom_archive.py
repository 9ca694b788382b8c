"""A synthetic DICOM archive: phantoms written as DX files plus a labels CSV (a manifest with a
column per finding, named as in `cxrfast.data.labels.findings`), for demos, benchmarks and tests
that need a folder of radiographs. With `lung_masks`, each phantom's aerated-lung mask is written
beside its DICOM file as `<patient>_lungs.png` (255 inside, 0 outside) and named in the labels'
`lung_mask` column; read such an archive through labels.csv, as a folder would yield the masks as
images too. With `reports`, each phantom's report (`cxrfast.data.synthetic_reports`) is its
`report` column, for captioning. Resumable: files already written are kept, so an interrupted run continues where it
stopped."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from rich.progress import Progress

from cxrfast.atomic import atomic_path
from cxrfast.data.reports import REPORT_COLUMN
from cxrfast.data.synthetic import FINDINGS, Findings, make_phantom, to_stored
from cxrfast.data.synthetic_reports import phantom_report
from cxrfast.data.variation import Variation
from cxrfast.io.dicom_writer import write_dicom
from cxrfast.io.png_writer import write_png

LABELS_FILE = "labels.csv"
MASK_COLUMN = "lung_mask"


def write_phantom_archive(out: str | os.PathLike, count: int, *, rows: int = 512, columns: int | None = None,
                          seed: int = 0, transfer_syntax: str = "explicit", bits_stored: int = 12,
                          findings: Findings = Findings(), variation: Variation = Variation(), lung_masks: bool = False,
                          reports: bool = False, progress: bool = True) -> Path:
    """Write `count` phantoms as `out/<patient>.dcm` (MONOCHROME1 and MONOCHROME2 alternating,
    windowed to their full range) and `out/labels.csv`; returns the labels path. `variation`: the
    nuisances of `cxrfast.data.variation` (none by default)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows_out = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"phantoms → {out}", total=count)
        for i in range(count):
            phantom = make_phantom(seed + i, rows, columns, findings=findings, variation=variation)
            patient = f"PHANTOM-{seed + i:06d}"
            path = out / f"{patient}.dcm"
            if not path.exists():  # resumable: a file is renamed into place only when complete
                pi = "MONOCHROME1" if i % 2 else "MONOCHROME2"
                with atomic_path(path) as partial:
                    write_dicom(partial, to_stored(phantom.image, bits_stored, pi), transfer_syntax=transfer_syntax,
                                bits_stored=bits_stored, photometric_interpretation=pi, patient_id=patient,
                                seed=seed + i, window=(2 ** (bits_stored - 1), 2**bits_stored))
            row = {"path": path.name, "patient_id": patient}
            if lung_masks:
                mask = out / f"{patient}_lungs.png"
                if not mask.exists():
                    with atomic_path(mask) as partial:
                        write_png(partial, phantom.lung_mask.astype(np.uint8) * 255)
                row[MASK_COLUMN] = mask.name
            if reports:
                row[REPORT_COLUMN] = phantom_report(phantom, seed)
            rows_out.append({**row, **phantom.labels})
            bar.advance(task)
    labels = out / LABELS_FILE
    with atomic_path(labels) as partial, open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "patient_id", *[MASK_COLUMN] * lung_masks,
                                               *[REPORT_COLUMN] * reports, *FINDINGS])
        writer.writeheader()
        writer.writerows(rows_out)
    return labels
