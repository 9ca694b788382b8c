"""The synthetic archive and the CLI that writes it: labels agree with the phantoms, files
read back, and a second run resumes instead of rewriting."""

from __future__ import annotations

import csv

import numpy as np

from cxrfast.cli import main
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.synthetic import make_phantom, to_stored
from cxrfast.io import read_dicom, read_header


def test_archive_files_labels_and_resume(tmp_path):
    labels = write_phantom_archive(tmp_path, 4, rows=64, columns=72, seed=10, progress=False)
    rows = list(csv.DictReader(open(labels)))
    assert list(rows[0]) == ["path", "patient_id", "Cardiomegaly", "Pleural Effusion", "Nodule", "Consolidation",
                             "Pneumothorax"]
    assert [r["patient_id"] for r in rows] == [f"PHANTOM-{i:06d}" for i in range(10, 14)]
    for i, row in enumerate(rows):
        phantom = make_phantom(10 + i, 64, 72)
        assert {k: int(v) for k, v in row.items() if k in phantom.labels} == phantom.labels
        pi = "MONOCHROME1" if i % 2 else "MONOCHROME2"
        stored = read_dicom(tmp_path / row["path"], stage="stored").pixels
        np.testing.assert_array_equal(stored, to_stored(phantom.image, 12, pi))
        assert read_header(tmp_path / row["path"]).patient_id == row["patient_id"]
    first = tmp_path / rows[0]["path"]
    stamp = first.stat().st_mtime_ns
    write_phantom_archive(tmp_path, 5, rows=64, columns=72, seed=10, progress=False)
    assert first.stat().st_mtime_ns == stamp  # kept, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"PHANTOM-{i:06d}.dcm" for i in range(10, 15)] + ["labels.csv"]


def test_cli_phantoms_and_header(tmp_path, capsys):
    assert main(["phantoms", str(tmp_path), "--count", "2", "--rows", "64", "--transfer-syntax", "rle"]) == 0
    path = next(tmp_path.glob("*.dcm"))
    assert read_header(path).transfer_syntax == "1.2.840.10008.1.2.5"
    assert main(["header", str(path)]) == 0
    assert "MONOCHROME2" in capsys.readouterr().out


def test_cli_reports_bad_files_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom file at all")
    assert main(["header", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.dcm" in err and "Traceback" not in err
