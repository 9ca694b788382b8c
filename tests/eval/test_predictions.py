"""predictions.csv: written and read back exactly (scores to the last bit, -1 and blank kept
apart), the columns a user would read with the csv module, and every malformed file a DataError
naming it and the line."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cxrfast.errors import DataError
from cxrfast.eval.predictions import Predictions


def _predictions():
    g = np.random.default_rng(0)
    targets = np.array([[1, 0], [0, -1], [np.nan, 1], [0, 0]], np.float32)
    return Predictions(["a.dcm", "b.dcm", "c.dcm", "d.dcm"], ["p1", "p1", "p2", "p3"],
                       ["validate", "validate", "test", "test"], ("Cardiomegaly", "Pleural Effusion"),
                       g.random((4, 2)) ** 7, targets)  # tiny scores too: their repr must round-trip


def test_round_trip_is_exact(tmp_path):
    original = _predictions()
    path = original.write(tmp_path / "predictions.csv")
    back = Predictions.read(path)
    assert (back.images, back.patients, back.splits, back.findings) == (original.images, original.patients,
                                                                        original.splits, original.findings)
    assert np.array_equal(back.scores, original.scores)  # bitwise
    np.testing.assert_array_equal(back.targets, original.targets)  # NaN where NaN, -1 where -1


def test_the_columns_as_a_user_reads_them(tmp_path):
    path = _predictions().write(tmp_path / "predictions.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "patient_id", "split", "Cardiomegaly score", "Cardiomegaly target",
                             "Pleural Effusion score", "Pleural Effusion target"]
    assert [r["Pleural Effusion target"] for r in rows] == ["0", "-1", "1", "0"]
    assert rows[2]["Cardiomegaly target"] == ""


def test_known_labels_and_splits():
    p = _predictions()
    targets, known = p.known()
    np.testing.assert_array_equal(known, [[1, 1], [1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(targets, [[1, 0], [0, 0], [0, 1], [0, 0]])
    test = p.split("test")
    assert test.images == ["c.dcm", "d.dcm"] and np.array_equal(test.scores, p.scores[2:])


@pytest.mark.parametrize("text,message", [
    ("image,patient_id,split,Edema score\na,p,test,0.5\n", r"line 1: column\(s\) 'Edema score' without their pair"),
    ("image,patient_id,split\na,p,test\n", "line 1: no '<finding> score' column"),
    ("image,patient_id,split,Edema score,Edema target\na,p,test,high,1\n", "line 2: Edema score is 'high'"),
    ("image,patient_id,split,Edema score,Edema target\na,p,test,nan,1\n", "line 2: Edema score is 'nan'; a score"),
    ("image,patient_id,split,Edema score,Edema target\na,p,test,0.5,2\n", "line 2: Edema target"),
    ("image,patient_id,split,Edema score,Edema target\na,p,test,0.5,1\na,p,test,0.2,0\n",
     "line 3: image 'test/a' already appears on line 2"),
    ("patient_id,split,Edema score,Edema target\np,test,0.5,1\n", "missing column"),
    ("image,patient_id,split,Edema score,Edema target\n", "holds no predictions"),
])
def test_malformed_files_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=f"bad.csv: .*{message}"):
        Predictions.read(path)


def test_shapes_must_agree():
    p = _predictions()
    with pytest.raises(ValueError, match="4 images and 2 findings"):
        Predictions(p.images, p.patients[:3], p.splits, p.findings, p.scores, p.targets)
