"""The linear probe: labels read from a manifest or a prepared cache, patient-disjoint splits,
features equal to the backbone on the centred view, AUROC equal to the Mann–Whitney statistic of
an informative feature (a one-feature logistic regression ranks test images by that feature), and
NaN, outside the mean, for a finding with one class."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from cxrfast.data.augment import resize_center
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.synthetic import FINDINGS, Finding, Findings
from cxrfast.errors import DataError
from cxrfast.train.linear_probe import ProbeSet, features, fit_and_score, linear_probe
from cxrfast.io import read_dicom
from cxrfast.models import create_backbone

N = 40


@pytest.fixture(scope="module")
def phantoms(module_folder):
    out = module_folder("probe")
    # Every finding common, so that each split holds both classes of each.
    write_phantom_archive(out, N, rows=64, findings=Findings(dict.fromkeys(FINDINGS, Finding(0.5))), progress=False)
    return out / "labels.csv"


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _mann_whitney(scores: np.ndarray, labels: np.ndarray) -> float:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return wins / (len(positives) * len(negatives))


def _informative(probe: ProbeSet, finding: int = 0) -> np.ndarray:
    """One feature: the first finding's label plus noise (0 where it is unknown)."""
    noise = np.random.default_rng(0).normal(0, 0.8, (len(probe.images), 1))
    return np.nan_to_num(probe.labels[:, finding:finding + 1]) + noise


def test_labels_and_patient_split(phantoms):
    probe = ProbeSet.read(phantoms)
    rows = _rows(phantoms)
    assert probe.findings == ["Cardiomegaly", "Pleural Effusion", "Nodule", "Consolidation", "Pneumothorax"]
    np.testing.assert_array_equal(probe.labels, [[float(r[k]) for k in probe.findings] for r in rows])
    assert probe.patients == [r["patient_id"] for r in rows]
    train, test = probe.split(seed=1)
    assert sorted([*train, *test]) == list(range(N)) and len(test) == round(0.3 * N)  # one image per patient
    assert not {probe.patients[i] for i in train} & {probe.patients[i] for i in test}


def test_uncertain_and_blank_labels_are_unknown(phantoms, tmp_path):
    rows = _rows(phantoms)
    rows[0]["Nodule"], rows[1]["Nodule"], rows[2]["Nodule"] = "-1", "", "1.0"
    manifest = tmp_path / "labels.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        (tmp_path / row["path"]).symlink_to(phantoms.parent / row["path"])
    probe = ProbeSet.read(manifest, findings=["Nodule"])
    assert probe.findings == ["Nodule"] and probe.table.values[0, 0] == -1
    assert np.isnan(probe.labels[:2, 0]).all() and probe.labels[2, 0] == 1


def test_a_prepared_cache_gives_the_same_probe_set(phantoms, tmp_path):
    cache = prepare_cache(phantoms, tmp_path / "cache", size=32, workers=0, progress=False).root
    from_cache, from_manifest = ProbeSet.read(cache), ProbeSet.read(phantoms)
    assert from_cache.findings == from_manifest.findings and from_cache.patients == from_manifest.patients
    np.testing.assert_array_equal(from_cache.labels, from_manifest.labels)
    assert from_cache.images[5].shape == (1, 32, 32)


def test_auroc_is_the_mann_whitney_statistic_of_the_feature(phantoms):
    probe = ProbeSet.read(phantoms)
    values = probe.table.values.copy()
    values[3, 0] = -1  # uncertain: out of the fit and the score
    probe = replace(probe, table=replace(probe.table, values=values))
    x = _informative(probe)
    result = fit_and_score(x, probe, seed=2)
    _, test = probe.split(seed=2)
    rows = test[~np.isnan(probe.labels[test, 0])]
    first = probe.findings[0]
    assert result.auroc[first] == pytest.approx(_mann_whitney(x[rows, 0], probe.labels[rows, 0]))
    assert result.auroc[first] > 0.7
    assert result.mean == pytest.approx(np.nanmean(list(result.auroc.values())))


def test_a_one_class_finding_is_nan_and_left_out_of_the_mean(phantoms):
    probe = ProbeSet.read(phantoms)
    values = probe.table.values.copy()
    values[:, 1] = 0  # Pleural Effusion never positive
    probe = replace(probe, table=replace(probe.table, values=values))
    result = fit_and_score(_informative(probe), probe, seed=2)
    assert list(result.auroc) == probe.findings and math.isnan(result.auroc["Pleural Effusion"])
    defined = [v for k, v in result.auroc.items() if k != "Pleural Effusion"]
    assert not any(math.isnan(v) for v in defined) and result.mean == pytest.approx(np.mean(defined))


def test_a_label_fraction_fits_on_fewer_patients(phantoms):
    probe = ProbeSet.read(phantoms)
    x = _informative(probe)
    whole, half = fit_and_score(x, probe, seed=2), fit_and_score(x, probe, seed=2, label_fraction=0.5)
    train, test = probe.split(seed=2)
    assert whole.train == len(train) and half.test == whole.test == len(test)
    assert len(train) / 2 <= half.train < len(train) and half.label_fraction == 0.5
    # the ranking is the feature's whatever rows fit the one coefficient
    assert half.auroc["Cardiomegaly"] == pytest.approx(whole.auroc["Cardiomegaly"])


def test_features_are_the_backbone_on_the_centred_view(phantoms):
    torch.manual_seed(0)
    backbone = create_backbone("resnet18")
    probe = ProbeSet.read(phantoms)
    got = features(backbone, probe, 32, batch_size=16)
    assert backbone.training  # its mode is given back
    image = torch.from_numpy(read_dicom(phantoms.parent / "PHANTOM-000007.dcm").pixels)[None, None]
    with torch.no_grad():
        expected = backbone.eval()(resize_center(image, 32))
    np.testing.assert_allclose(got[7], expected[0].double().numpy(), rtol=1e-5, atol=1e-6)
    result = linear_probe(backbone, probe, 32)
    assert result.train + result.test == N and set(result.auroc) == set(probe.findings)


def test_errors(tmp_path, phantoms):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,cardiomegaly\nPHANTOM-000000.dcm,1\n")  # not the vocabulary's spelling
    with pytest.raises(DataError, match="no finding columns"):
        ProbeSet.read(bad)
    bad.write_text("path,Cardiomegaly\nPHANTOM-000000.dcm,maybe\n")
    with pytest.raises(DataError, match=r"bad.csv: line 2: Cardiomegaly is 'maybe'"):
        ProbeSet.read(bad)
    with pytest.raises(DataError, match="missing column"):
        ProbeSet.read(phantoms, findings=["Edema"])
    with pytest.raises(DataError, match="neither a labelled manifest"):
        ProbeSet.read(phantoms.parent)
