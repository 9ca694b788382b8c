"""Label readers on small files in each dataset's own layout, uncertainty policies, view filters,
patient-level splits and nested, stratified label-fraction subsets."""

from __future__ import annotations

import numpy as np
import pytest

from cxrfast.data.labels import (LabelTable, label_fraction_subsets, official_split, read_chexpert, read_mimic,
                                 read_nih, read_rsna, split_by_patient)
from cxrfast.data.labels.chexpert import FINDINGS as CHEXPERT_FINDINGS
from cxrfast.data.labels.findings import FINDINGS, NIH_SPELLINGS
from cxrfast.data.labels.mimic import FINDINGS as MIMIC_FINDINGS
from cxrfast.data.labels.nih import FINDINGS as NIH_FINDINGS
from cxrfast.errors import DataError

CHEXPERT_HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
                   "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
                   "Pleural Effusion,Pleural Other,Fracture,Support Devices")
CHEXPERT_TRAIN = """\
CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0
CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,\
Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,
CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Female,83,Frontal,AP,,,,1.0,,,-1.0,,,,,,1.0,
CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,,1.0,,,-1.0,,,,,,1.0,
CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,41,Frontal,AP,,,,,,1.0,,,,0.0,,,,
CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg,Female,20,Frontal,PA,1.0,0.0,,,,,0.0,,,0.0,0.0,,,
CheXpert-v1.0-small/train/patient00004/study1/view2_lateral.jpg,Female,20,Lateral,,1.0,0.0,,,,,0.0,,,0.0,0.0,,,
CheXpert-v1.0-small/train/patient00005/study1/view1_frontal.jpg,Male,33,Frontal,PA,1.0,,0.0,,,,,,,,0.0,,,1.0
CheXpert-v1.0-small/train/patient00005/study2/view1_frontal.jpg,Male,33,Frontal,,,,,,,,,,,,,,,1.0
CheXpert-v1.0-small/train/patient00006/study1/view1_frontal.jpg,Female,42,Frontal,AP,,,,,,,,,1.0,,1.0,,,
CheXpert-v1.0-small/train/patient00007/study1/view1_frontal.jpg,Male,69,Frontal,AP,,,,,,-1.0,,,-1.0,,-1.0,,,1.0
CheXpert-v1.0-small/train/patient00007/study1/view2_lateral.jpg,Male,69,Lateral,,,,,,,-1.0,,,-1.0,,-1.0,,,1.0
"""
CHEXPERT_VALID = """\
CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,\
Male,73,Frontal,AP,0.0,1.0,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0
CheXpert-v1.0-small/valid/patient64542/study1/view2_lateral.jpg,\
Male,70,Lateral,,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0
"""

MIMIC_LABELS = """\
subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,Lung Lesion,\
Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices
10000032,50414267,,,,,,,,,1.0,,,,,
10000032,53189527,,,,,,,,,1.0,,,,,
10000032,53911762,,,,,,,,,1.0,,,,,
10000764,57375967,,,1.0,,,,,,,,,-1.0,,
10000898,50771383,,,,,,,,,1.0,,,,,
10000980,51967283,,1.0,,0.0,,,,1.0,,1.0,,,0.0,
10001038,58224000,-1.0,,,,,,,,,0.0,,,,1.0
"""
MIMIC_METADATA = """\
dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,StudyTime,\
ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning
02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,\
CHEST (PA AND LAT),postero-anterior,Erect
174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,\
213014.531,CHEST (PA AND LAT),lateral,Erect
2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab,10000032,53189527,CHEST (PA AND LAT),PA,3056,2544,21800626,165500.312,\
CHEST (PA AND LAT),postero-anterior,Erect
e084de3b-be89b11e-20fe3f9f-9c8d8dfe-4cfd202c,10000032,53189527,CHEST (PA AND LAT),LATERAL,3056,2544,21800626,\
165500.312,CHEST (PA AND LAT),lateral,Erect
68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714,10000032,53911762,CHEST (PORTABLE AP),AP,2705,2539,21800723,80556.875,\
CHEST (PORTABLE AP),antero-posterior,
fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818,10000764,57375967,CHEST (PA AND LAT),AP,2544,3056,21321015,75424.015,\
CHEST (PA AND LAT),antero-posterior,Erect
ea030e7a-2e3b1346-bc518786-7a8fd698-f673b44c,10000764,57375967,CHEST (PA AND LAT),,3056,2544,21321015,75424.015,\
CHEST (PA AND LAT),,Erect
096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4,10000898,50771383,CHEST (PA AND LAT),PA,3056,2544,21190214,170606.984,\
CHEST (PA AND LAT),postero-anterior,Erect
b79e55c3-735ce5ac-64412506-cdc9ea79-f1af521f,10000898,50771383,CHEST (PA AND LAT),LL,3056,2544,21190214,170606.984,\
CHEST (PA AND LAT),left lateral,Erect
0c4eb1e1-b801903c-bcebe8a4-3da9cd3c-3b94a27c,10000935,50578979,CHEST (PORTABLE AP),AP,2544,3056,21870808,153026.875,\
CHEST (PORTABLE AP),antero-posterior,Erect
2b5a0cf0-3f5c3c6d-3e2b1dc1-7e3b0bb0-1b9b9b5d,10000980,51967283,CHEST (PA AND LAT),PA,3056,2544,21890522,101227.109,\
CHEST (PA AND LAT),postero-anterior,Erect
"""
MIMIC_SPLIT = """\
dicom_id,study_id,subject_id,split
02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,50414267,10000032,train
174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962,50414267,10000032,train
2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab,53189527,10000032,train
e084de3b-be89b11e-20fe3f9f-9c8d8dfe-4cfd202c,53189527,10000032,train
68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714,53911762,10000032,train
fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818,57375967,10000764,validate
ea030e7a-2e3b1346-bc518786-7a8fd698-f673b44c,57375967,10000764,validate
096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4,50771383,10000898,test
b79e55c3-735ce5ac-64412506-cdc9ea79-f1af521f,50771383,10000898,test
0c4eb1e1-b801903c-bcebe8a4-3da9cd3c-3b94a27c,50578979,10000935,train
2b5a0cf0-3f5c3c6d-3e2b1dc1-7e3b0bb0-1b9b9b5d,51967283,10000980,train
"""

# The 2017 file: the bracketed column names split at their commas, and a comma ending every line.
NIH_2017 = """\
Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,\
OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],
00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,
00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143,
00000001_002.png,Cardiomegaly|Effusion,2,1,58,M,PA,2500,2048,0.168,0.168,
00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,
00000003_000.png,Hernia,0,3,81,F,PA,2582,2991,0.143,0.143,
00000003_001.png,Hernia,1,3,74,F,PA,2500,2048,0.168,0.168,
00000004_000.png,Mass|Nodule,0,4,82,M,AP,2500,2048,0.168,0.168,
00000005_000.png,No Finding,0,5,69,F,PA,2048,2500,0.168,0.168,
00000005_006.png,Infiltration,6,5,70,F,PA,2048,2500,0.168,0.168,
00000013_005.png,Emphysema|Infiltration|Pleural_Thickening|Pneumothorax,5,13,56,M,AP,3056,2544,0.139,0.139,
00000013_026.png,Cardiomegaly|Infiltration,26,13,57,M,AP,2500,2048,0.168,0.168,
00000030_001.png,Atelectasis,1,30,79,M,PA,2992,2991,0.143,0.143,
"""
NIH_TRAIN_VAL = "00000001_000.png\n00000001_001.png\n00000001_002.png\n00000002_000.png\n00000004_000.png\n" \
                "00000005_000.png\n00000005_006.png\n00000030_001.png\n"
NIH_TEST = "00000003_000.png\n00000003_001.png\n00000013_005.png\n00000013_026.png\n"

RSNA_LABELS = """\
patientId,x,y,width,height,Target
0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0
00313ee0-9eaa-42f4-b0ab-c148ed3241cd,,,,,0
00322d4d-1c29-4943-afc9-b6754be640eb,,,,,0
003d8fa0-6bf1-40ed-b54c-ac657f8495c5,,,,,0
00436515-870c-4b36-a041-de91049b9ab4,264.0,152.0,213.0,379.0,1
00436515-870c-4b36-a041-de91049b9ab4,562.0,152.0,256.0,453.0,1
00569f44-917d-4c86-a842-81832af98c30,,,,,0
006cec2e-6ce2-4549-bffa-eadfcd1e9970,,,,,0
00704310-78a8-4b38-8475-49f4573b2dbb,323.0,577.0,160.0,104.0,1
00704310-78a8-4b38-8475-49f4573b2dbb,695.0,575.0,162.0,137.0,1
00704310-78a8-4b38-8475-49f4573b2dbb,400.0,300.0,100.0,120.0,1
00aecb01-a116-45a2-956c-08d2fa55433f,288.0,322.0,94.0,135.0,1
"""


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _labels(findings, row):
    """{finding: value} of a row of values, blanks (NaN) left out."""
    return {name: float(v) for name, v in zip(findings, row) if not np.isnan(v)}


# --- CheXpert


@pytest.fixture
def chexpert(tmp_path):
    return _write(tmp_path / "train.csv", CHEXPERT_HEADER + "\n" + CHEXPERT_TRAIN)


def test_chexpert_paths_patients_views_and_values(chexpert):
    table = read_chexpert(chexpert)
    assert len(table) == 12 and table.findings == CHEXPERT_FINDINGS and table.values.dtype == np.float32
    assert table.paths[1] == "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg"
    assert table.patients[:5] == ["patient00001", "patient00002", "patient00002", "patient00002", "patient00003"]
    assert table.studies[1:4] == ["patient00002/study2", "patient00002/study1", "patient00002/study1"]
    assert table.views == ["AP", "AP", "AP", "LATERAL", "AP", "PA", "LATERAL", "PA", None, "AP", "AP", "LATERAL"]
    assert table.split == ["train"] * 12
    assert _labels(table.findings, table.values[0]) == {"No Finding": 1, "Pneumothorax": 0, "Support Devices": 1}
    assert _labels(table.findings, table.values[1]) == {
        "Cardiomegaly": -1, "Lung Opacity": 1, "Edema": -1, "Consolidation": -1, "Atelectasis": -1,
        "Pleural Effusion": -1, "Fracture": 1}
    assert np.isnan(table.values[8, :13]).all() and table.values[8, 13] == 1
    assert table.boxes is None and table.skipped == ()


def test_manifest_of_a_label_table_reads_back(chexpert, tmp_path):
    """The manifest `write_manifest` writes is what `find_sources` and the linear probe read:
    paths relative to the CSV (rebased onto the dataset root), patients, and every label."""
    from cxrfast.data.sources import find_sources

    table = read_chexpert(chexpert)
    manifest = table.write_manifest(tmp_path / "manifests" / "chexpert.csv", root=tmp_path / "data")
    sources = find_sources(manifest)
    assert [s.path.resolve() for s in sources] == [(tmp_path / "data" / p).resolve() for p in table.paths]
    assert [s.columns["patient_id"] for s in sources] == table.patients
    back = np.array([[float(s.columns[f]) if s.columns[f] else np.nan for f in table.findings] for s in sources])
    np.testing.assert_array_equal(back, table.values)


def test_manifest_reads_back_into_the_same_table(chexpert, tmp_path):
    table = read_chexpert(chexpert)
    back = LabelTable.read_manifest(table.write_manifest(tmp_path / "chexpert.csv"))
    assert (back.paths, back.patients, back.views, back.findings, back.split) == (
        table.paths, table.patients, table.views, table.findings, table.split)
    assert back.split is not None  # CheXpert's official split travels in the manifest
    np.testing.assert_array_equal(back.values, table.values)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written in place atomically


def test_manifest_columns_patients_and_errors(tmp_path):
    manifest = _write(tmp_path / "m.csv", "name,Edema,shard,Cardiomegaly,custom,view_position\n"
                                          "a.png,1,0,,0,pa\nb.png,-1.0,0,0,1,\n")
    table = LabelTable.read_manifest(manifest, path_column="name")  # a prepared cache names its images
    assert table.findings == ("Edema", "Cardiomegaly")  # the vocabulary's columns, in the file's order
    assert table.paths == table.patients == ["a.png", "b.png"] and table.views == ["PA", None]
    np.testing.assert_array_equal(table.values, [[1, np.nan], [-1, 0]])
    custom = LabelTable.read_manifest(manifest, ["custom"], path_column="name")
    assert custom.findings == ("custom",) and custom.values[:, 0].tolist() == [0, 1]
    with pytest.raises(DataError, match=r"m\.csv: line 1: missing column\(s\) 'path'"):
        LabelTable.read_manifest(manifest)
    with pytest.raises(DataError, match=r"m\.csv: line 1: missing column\(s\) 'Fracture'"):
        LabelTable.read_manifest(manifest, ["Fracture"], path_column="name")
    cases = {"path,edema\na.png,1\n": "no finding columns",
             "path,Edema\na.png,2\n": r"line 2: Edema is '2'; a label must be 1, 0, -1 or blank",
             "path,Edema\na.png,1\na.png,0\n": r"line 3: path 'a.png' already appears on line 2",
             "path,Edema\n,1\n": "line 2: path is blank",
             "path,Edema\n": "lists no images",
             "path,split,Edema\na.png,train,1\nb.png,,0\n": "line 3: split is blank"}
    for text, message in cases.items():
        with pytest.raises(DataError, match=message):
            LabelTable.read_manifest(_write(tmp_path / "bad.csv", text))


def test_one_vocabulary_of_findings(chexpert, mimic):
    assert set(CHEXPERT_FINDINGS) | set(MIMIC_FINDINGS) | set(NIH_FINDINGS) | {"Pneumonia"} <= set(FINDINGS)
    assert len(set(FINDINGS)) == len(FINDINGS)
    assert not set(NIH_SPELLINGS) & set(FINDINGS) and set(NIH_SPELLINGS.values()) <= set(FINDINGS)
    assert "Effusion" not in NIH_FINDINGS and "Pleural Effusion" in NIH_FINDINGS
    # CheXpert and MIMIC (the same labeller) give tables with the same columns, which concatenate.
    with pytest.warns(UserWarning, match="1 label line"):
        mimic_table = read_mimic(*mimic)
    both = LabelTable.concat([read_chexpert(chexpert), mimic_table])
    assert both.findings == CHEXPERT_FINDINGS and len(both) == 12 + 11


def test_chexpert_train_and_valid_join_with_the_official_split(chexpert, tmp_path):
    valid = read_chexpert(_write(tmp_path / "valid.csv", CHEXPERT_HEADER + "\n" + CHEXPERT_VALID))
    assert valid.split == ["validate", "validate"] and valid.views == ["AP", "LATERAL"]
    assert not np.isnan(valid.values).any()
    both = LabelTable.concat([read_chexpert(chexpert), valid])
    with pytest.raises(ValueError, match="same findings"):
        LabelTable.concat([valid, LabelTable([], [], [], ("Edema",), np.zeros((0, 1), np.float32))])
    assert len(both) == 14 and both.patients[-1] == "patient64542"
    splits = official_split(both)
    assert list(splits) == ["train", "validate"]
    np.testing.assert_array_equal(splits["validate"], [12, 13])
    np.testing.assert_array_equal(splits["train"], np.arange(12))


def test_uncertainty_policies(chexpert):
    table = read_chexpert(chexpert)
    row = 1  # Cardiomegaly -1, Lung Opacity 1, Lung Lesion blank
    columns = [table.findings.index(name) for name in ("Cardiomegaly", "Lung Opacity", "Lung Lesion")]
    expected = {"ignore": ([0, 1, 0], [False, True, False]),
                "zeros": ([0, 1, 0], [True, True, False]),
                "ones": ([1, 1, 0], [True, True, False])}
    for policy, (targets, mask) in expected.items():
        t, m = table.targets(policy)
        assert t.dtype == np.float32 and m.dtype == bool and t.shape == m.shape == table.values.shape
        np.testing.assert_array_equal(t[row, columns], targets)
        np.testing.assert_array_equal(m[row, columns], mask)
        assert not m[np.isnan(table.values)].any()
    ignored = table.targets("ignore")[1]
    assert ignored.sum() == (~np.isnan(table.values) & (table.values != -1)).sum()


def test_per_finding_policy(chexpert):
    table = read_chexpert(chexpert)
    t, m = table.targets("zeros", per_finding={"Atelectasis": "ones", "Edema": "ones", "Pleural Effusion": "ignore"})
    row = 10  # Edema, Atelectasis and Pleural Effusion uncertain
    assert t[row, table.findings.index("Edema")] == 1 and t[row, table.findings.index("Atelectasis")] == 1
    assert not m[row, table.findings.index("Pleural Effusion")]
    assert t[1, table.findings.index("Cardiomegaly")] == 0 and m[1, table.findings.index("Cardiomegaly")]
    with pytest.raises(ValueError, match="ignore, zeros, ones"):
        table.targets("u-ones")
    with pytest.raises(ValueError, match="ignore, zeros, ones"):
        table.targets("zeros", per_finding={"Edema": "multiclass"})
    with pytest.raises(ValueError, match="Effusion"):
        table.targets("zeros", per_finding={"Effusion": "ones"})


def test_filter_views(chexpert):
    table = read_chexpert(chexpert)
    frontal = table.filter_views(("PA", "AP"))
    assert len(frontal) == 8 and set(frontal.views) == {"AP", "PA"}
    assert frontal.paths[3] == "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg"
    np.testing.assert_array_equal(frontal.values, table.values[[0, 1, 2, 4, 5, 7, 9, 10]])
    assert frontal.studies == [table.studies[i] for i in (0, 1, 2, 4, 5, 7, 9, 10)]
    lateral = table.filter_views("lateral")
    assert lateral.patients == ["patient00002", "patient00004", "patient00007"]


def test_chexpert_errors_name_the_file_and_line(tmp_path):
    missing = _write(tmp_path / "no_edema.csv", CHEXPERT_HEADER.replace(",Edema", "") + "\n")
    with pytest.raises(DataError, match=r"no_edema\.csv: line 1: missing column\(s\) 'Edema'"):
        read_chexpert(missing)
    bad = _write(tmp_path / "bad_value.csv", CHEXPERT_HEADER + "\n" + CHEXPERT_TRAIN.replace(",-1.0,1.0,", ",2.0,1.0,"))
    with pytest.raises(DataError, match=r"bad_value\.csv: line 3: Cardiomegaly is '2.0'"):
        read_chexpert(bad)
    short = _write(tmp_path / "short.csv", CHEXPERT_HEADER + "\nCheXpert-v1.0-small/train/patient00001/study1/"
                                                             "view1_frontal.jpg,Female,68,Frontal,AP,1.0\n")
    with pytest.raises(DataError, match=r"short\.csv: line 2: 6 fields where the header names 19"):
        read_chexpert(short)
    path = _write(tmp_path / "path.csv", CHEXPERT_HEADER + "\n" + CHEXPERT_TRAIN.replace("patient00003/", ""))
    with pytest.raises(DataError, match=r"path\.csv: line 6: Path"):
        read_chexpert(path)
    repeated = _write(tmp_path / "repeated.csv", CHEXPERT_HEADER + "\n" + CHEXPERT_TRAIN + CHEXPERT_TRAIN[:120])
    with pytest.raises(DataError, match=r"repeated\.csv: line 14: Path .* already appears on line 2"):
        read_chexpert(repeated)
    latin = tmp_path / "latin.csv"
    latin.write_bytes((CHEXPERT_HEADER + "\n" + CHEXPERT_TRAIN).replace("Male,41", "M\xe4nnlich,41").encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv: line 6: not UTF-8"):
        read_chexpert(latin)
    with pytest.raises(DataError, match=r"absent\.csv: cannot be opened"):
        read_chexpert(tmp_path / "absent.csv")


# --- MIMIC-CXR-JPG


@pytest.fixture
def mimic(tmp_path):
    return (_write(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", MIMIC_LABELS),
            _write(tmp_path / "mimic-cxr-2.0.0-metadata.csv", MIMIC_METADATA),
            _write(tmp_path / "mimic-cxr-2.0.0-split.csv", MIMIC_SPLIT))


def test_mimic_join_repeats_study_labels_per_image(mimic):
    with pytest.warns(UserWarning, match="1 label line"):
        table = read_mimic(*mimic)
    assert len(table) == 11 and table.findings == MIMIC_FINDINGS
    assert table.paths[0] == "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    assert table.paths[9] == "files/p10/p10000935/s50578979/0c4eb1e1-b801903c-bcebe8a4-3da9cd3c-3b94a27c.jpg"
    assert table.patients[:6] == ["10000032"] * 5 + ["10000764"]
    assert table.studies[5:7] == ["57375967", "57375967"]
    assert table.views == ["PA", "LATERAL", "PA", "LATERAL", "AP", "AP", None, "PA", "LL", "AP", "PA"]
    assert table.split == ["train"] * 5 + ["validate"] * 2 + ["test"] * 2 + ["train"] * 2
    for i in (5, 6):  # both images of study 57375967
        assert _labels(table.findings, table.values[i]) == {"Consolidation": 1, "Pneumonia": -1}
    assert np.isnan(table.values[9]).all()  # study 50578979 has no label row
    assert _labels(table.findings, table.values[10]) == {
        "Cardiomegaly": 1, "Edema": 0, "Lung Opacity": 1, "Pleural Effusion": 1, "Pneumothorax": 0}
    (skipped,) = table.skipped
    assert skipped.file.endswith("mimic-cxr-2.0.0-chexpert.csv") and skipped.line == 8 and "58224000" in skipped.reason
    splits = official_split(table)
    np.testing.assert_array_equal(splits["validate"], [5, 6])
    np.testing.assert_array_equal(splits["train"], [0, 1, 2, 3, 4, 9, 10])


def test_mimic_errors(mimic, tmp_path):
    labels, metadata, split = mimic
    unsplit = _write(tmp_path / "split_short.csv", "".join(MIMIC_SPLIT.splitlines(keepends=True)[:-1]))
    with pytest.raises(DataError, match=r"metadata\.csv: line 12: dicom_id '2b5a0cf0.*' is not in .*split_short\.csv"):
        read_mimic(labels, metadata, unsplit)
    bad_split = _write(tmp_path / "bad_split.csv", MIMIC_SPLIT.replace("validate", "valid"))
    with pytest.raises(DataError, match=r"bad_split\.csv: line 7: split is 'valid'"):
        read_mimic(labels, metadata, bad_split)
    bad_label = _write(tmp_path / "bad_label.csv", MIMIC_LABELS.replace(",-1.0,,", ",yes,,"))
    with pytest.raises(DataError, match=r"bad_label\.csv: line 5: Pneumonia is 'yes'"):
        read_mimic(bad_label, metadata, split)
    no_view = _write(tmp_path / "no_view.csv", MIMIC_METADATA.replace("ViewPosition", "View"))
    with pytest.raises(DataError, match=r"no_view\.csv: line 1: missing column\(s\) 'ViewPosition'"):
        read_mimic(labels, no_view, split)


# --- NIH ChestX-ray14


@pytest.fixture
def nih_lists(tmp_path):
    return _write(tmp_path / "train_val_list.txt", NIH_TRAIN_VAL), _write(tmp_path / "test_list.txt", NIH_TEST)


@pytest.mark.parametrize("trailing_comma", [True, False])
def test_nih_labels_views_and_official_lists(tmp_path, nih_lists, trailing_comma):
    text = NIH_2017 if trailing_comma else NIH_2017.replace(",\n", "\n")
    table = read_nih(_write(tmp_path / "Data_Entry_2017.csv", text), *nih_lists, image_dir="images")
    assert len(table) == 12 and table.findings == NIH_FINDINGS and table.studies is None
    assert table.paths[:2] == ["images/00000001_000.png", "images/00000001_001.png"]
    assert table.patients[:5] == ["1", "1", "1", "2", "3"]
    assert [i for i, v in enumerate(table.views) if v != "PA"] == [6, 9, 10]
    assert _labels(NIH_FINDINGS, table.values[1]) == {name: float(name in ("Cardiomegaly", "Emphysema"))
                                                      for name in NIH_FINDINGS}
    np.testing.assert_array_equal(table.values[3], 0)  # No Finding
    assert table.values[9].sum() == 4 and table.values.min() == 0 and table.values.max() == 1
    # NIH's spellings become the vocabulary's: Effusion, Pleural_Thickening
    assert {k for k, v in _labels(table.findings, table.values[2]).items() if v} == {"Cardiomegaly", "Pleural Effusion"}
    assert {k for k, v in _labels(table.findings, table.values[9]).items() if v} == {
        "Emphysema", "Infiltration", "Pleural Thickening", "Pneumothorax"}
    splits = official_split(table)
    np.testing.assert_array_equal(splits["test"], [4, 5, 9, 10])
    assert list(splits) == ["train", "test"] and len(splits["train"]) == 8


def test_nih_without_lists_and_images_outside_them(tmp_path, nih_lists):
    data_entry = _write(tmp_path / "Data_Entry_2017_v2020.csv", NIH_2017)
    assert read_nih(data_entry).split is None and read_nih(data_entry).paths[0] == "00000001_000.png"
    train_val, test = nih_lists
    _write(train_val, NIH_TRAIN_VAL.replace("00000005_006.png\n", "") + "00000099_000.png\n")
    with pytest.warns(UserWarning, match="2 label line"):
        table = read_nih(data_entry, train_val, test)
    assert len(table) == 11 and "00000005_006.png" not in table.paths
    reasons = [(s.file.rsplit("/", 1)[-1], s.line, s.reason.split()[0]) for s in table.skipped]
    assert reasons == [("Data_Entry_2017_v2020.csv", 10, "00000005_006.png"),
                       ("train_val_list.txt", 8, "00000099_000.png")]


def test_nih_errors(tmp_path, nih_lists):
    unknown = _write(tmp_path / "unknown.csv", NIH_2017.replace("Mass|Nodule", "Mass|Nodules"))
    with pytest.raises(DataError, match=r"unknown\.csv: line 8: Finding Labels 'Mass\|Nodules' names 'Nodules'"):
        read_nih(unknown)
    mixed = _write(tmp_path / "mixed.csv", NIH_2017.replace("Hernia,0,3", "No Finding|Hernia,0,3"))
    with pytest.raises(DataError, match=r"mixed\.csv: line 6: .*'No Finding'"):
        read_nih(mixed)
    both = _write(tmp_path / "test_twice.txt", NIH_TEST + "00000001_000.png\n")
    with pytest.raises(DataError, match=r"test_twice\.txt: line 5: 00000001_000.png is already listed in .*"
                                        r"train_val_list\.txt: line 1"):
        read_nih(_write(tmp_path / "Data_Entry_2017.csv", NIH_2017), nih_lists[0], both)
    with pytest.raises(ValueError, match="both"):
        read_nih(tmp_path / "Data_Entry_2017.csv", nih_lists[0])


# --- RSNA Pneumonia


def test_rsna_one_image_per_patient_with_its_boxes(tmp_path):
    table = read_rsna(_write(tmp_path / "stage_2_train_labels.csv", RSNA_LABELS), image_dir="stage_2_train_images")
    assert len(table) == 9 and table.findings == ("Pneumonia",)
    assert table.paths[0] == "stage_2_train_images/0004cfab-14fd-4e49-80ba-63a80b6bddd6.dcm"
    assert table.patients[4] == "00436515-870c-4b36-a041-de91049b9ab4"
    np.testing.assert_array_equal(table.values[:, 0], [0, 0, 0, 0, 1, 0, 0, 1, 1])
    assert table.boxes[4] == [(264.0, 152.0, 213.0, 379.0), (562.0, 152.0, 256.0, 453.0)]
    assert len(table.boxes[7]) == 3 and table.boxes[8] == [(288.0, 322.0, 94.0, 135.0)]
    assert table.boxes[0] == [] and table.views == [None] * 9
    positive = table.take([8, 4])
    assert positive.boxes == [table.boxes[8], table.boxes[4]] and positive.values[:, 0].tolist() == [1, 1]


def test_rsna_errors(tmp_path):
    no_box = _write(tmp_path / "no_box.csv", RSNA_LABELS.replace("288.0,322.0,94.0,135.0,1", ",,,,1"))
    with pytest.raises(DataError, match=r"no_box\.csv: line 13: Target is 1 but the box fields are blank"):
        read_rsna(no_box)
    negative = "00569f44-917d-4c86-a842-81832af98c30"
    boxed = _write(tmp_path / "boxed_negative.csv", RSNA_LABELS.replace(f"{negative},,,,,0", f"{negative},1,2,3,4,0"))
    with pytest.raises(DataError, match=r"boxed_negative\.csv: line 8: Target is 0 but the box"):
        read_rsna(boxed)
    mixed = _write(tmp_path / "mixed.csv", RSNA_LABELS + "00436515-870c-4b36-a041-de91049b9ab4,,,,,0\n")
    with pytest.raises(DataError, match=r"mixed\.csv: line 14: patientId .* already appears on line 6"):
        read_rsna(mixed)
    text = _write(tmp_path / "text.csv", RSNA_LABELS.replace("94.0,135.0,1", "94.0,wide,1"))
    with pytest.raises(DataError, match=r"text\.csv: line 13: box \(288.0, 322.0, 94.0, wide\) is not four numbers"):
        read_rsna(text)
    target = _write(tmp_path / "target.csv", RSNA_LABELS.replace(",0\n", ",0.5\n", 1))
    with pytest.raises(DataError, match=r"target\.csv: line 2: Target is '0.5'"):
        read_rsna(target)


# --- splits and label-fraction subsets


def _synthetic(n_patients: int, prevalences, seed: int = 0) -> LabelTable:
    """1-3 images per patient with independent findings at `prevalences`, 5% blanks and 3% uncertain."""
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, 4, n_patients)
    patients = [f"P{p:05d}" for p, k in enumerate(per_patient) for _ in range(k)]
    n = len(patients)
    values = (rng.random((n, len(prevalences))) < np.asarray(prevalences)).astype(np.float32)
    draw = rng.random(values.shape)
    values[draw < 0.03] = -1
    values[(draw >= 0.03) & (draw < 0.08)] = np.nan
    order = rng.permutation(n)  # patients' rows interleaved, as in a real file
    return LabelTable(paths=[f"img{i}.png" for i in range(n)], patients=[patients[i] for i in order],
                      views=["PA"] * n, findings=tuple(f"F{k}" for k in range(len(prevalences))), values=values[order])


PREVALENCES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def test_split_by_patient_keeps_patients_together_and_is_seeded():
    table = _synthetic(500, (0.1, 0.3))
    splits = split_by_patient(table, seed=3)
    patients = {name: {table.patients[i] for i in rows} for name, rows in splits.items()}
    assert not (patients["train"] & patients["validate"] or patients["train"] & patients["test"]
                or patients["validate"] & patients["test"])
    assert [len(patients[n]) for n in ("train", "validate", "test")] == [400, 50, 50]
    assert sorted(np.concatenate(list(splits.values()))) == list(range(len(table)))
    again = split_by_patient(table, seed=3)
    assert all(np.array_equal(splits[n], again[n]) for n in splits)
    other = split_by_patient(table, seed=4)
    assert not np.array_equal(splits["test"], other["test"])
    odd = split_by_patient(table.take(np.arange(7)), {"a": 0.5, "b": 0.5})
    counts = [len({table.patients[i] for i in rows}) for rows in odd.values()]
    assert abs(counts[0] - counts[1]) <= 1
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_patient(table, {"train": 0.8, "test": 0.1})
    with pytest.raises(ValueError, match="no official split"):
        official_split(table)


def test_label_fraction_subsets_are_nested_stratified_and_cover_every_finding():
    table = _synthetic(2500, PREVALENCES)
    train = split_by_patient(table)["train"]  # 2000 patients
    subsets = label_fraction_subsets(table, train, seed=0)
    small, medium, full = subsets[0.01], subsets[0.1], subsets[1.0]
    np.testing.assert_array_equal(full, train)
    assert set(small) <= set(medium) <= set(full)
    for subset in (small, medium):  # whole patients only
        inside = {table.patients[i] for i in subset}
        assert sum(table.patients[i] in inside for i in range(len(table))) == len(subset)
    assert 0.01 * len(train) <= len(small) <= 0.03 * len(train)
    assert 0.1 * len(train) <= len(medium) <= 0.1 * len(train) + 3

    targets, mask = table.targets("ignore")
    positive = (targets == 1) & mask

    pool = positive[train].sum(0) / mask[train].sum(0)
    for subset in (small, medium):
        # Each finding's prevalence within two images of the pool's; a random draw of patients
        # is off by sqrt(p·n) images, about 7 for the commonest finding at 10%.
        labelled = mask[subset].sum(0)
        assert (np.abs(positive[subset].sum(0) / labelled - pool) <= 2 / labelled).all()
    assert (positive[small].sum(0) >= 1).all()

    again = label_fraction_subsets(table, train, seed=0)
    assert all(np.array_equal(subsets[f], again[f]) for f in subsets)
    other = label_fraction_subsets(table, train, seed=1)
    assert not np.array_equal(other[0.1], medium)


def test_label_fraction_subsets_count_positives_under_the_policy():
    table = _synthetic(300, (0.0, 0.2))
    values = table.values.copy()
    values[:, 0] = 0
    uncertain = [i for i, p in enumerate(table.patients) if p in ("P00007", "P00150", "P00290")]
    values[uncertain, 0] = -1  # the first finding is only ever uncertain
    table = LabelTable(table.paths, table.patients, table.views, table.findings, values)
    rows = np.arange(len(table))
    for policy, covered in (("ignore", False), ("zeros", False), ("ones", True)):
        subset = label_fraction_subsets(table, rows, (0.01,), policy=policy)[0.01]
        assert bool(np.isin(subset, uncertain).any()) == covered, policy
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        label_fraction_subsets(table, rows, (0.0, 0.5))
    with pytest.raises(ValueError, match="no rows"):
        label_fraction_subsets(table, [], (0.5,))
