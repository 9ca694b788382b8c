"""The linear probe: labels read from a manifest, patient-disjoint splits, features equal to the
backbone on the centred view, and AUROC equal to the Mann–Whitney statistic of an informative
feature (a one-feature logistic regression ranks test images by that feature)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from cxrfast.data.augment import resize_center
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.errors import DataError
from cxrfast.eval.linear_probe import ProbeSet, features, fit_and_score, linear_probe
from cxrfast.io import read_dicom
from cxrfast.models import create_backbone


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    write_phantom_archive(out, 40, rows=64, progress=False)
    return out / "labels.csv"


def _mann_whitney(scores: np.ndarray, labels: np.ndarray) -> float:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return wins / (len(positives) * len(negatives))


def test_labels_and_patient_split(phantoms):
    probe = ProbeSet.read(phantoms)
    with open(phantoms, newline="") as f:
        rows = list(csv.DictReader(f))
    assert probe.findings == [k for k in rows[0] if k not in ("path", "patient_id")]
    np.testing.assert_array_equal(probe.labels, [[float(r[k]) for k in probe.findings] for r in rows])
    train, test = probe.split(seed=1)
    assert len(train) + len(test) == 40 and not {probe.patients[i] for i in train} & {probe.patients[i] for i in test}


def test_auroc_is_the_mann_whitney_statistic_of_the_feature(phantoms):
    probe = ProbeSet.read(phantoms)
    rng = np.random.default_rng(0)
    labels = probe.labels.copy()
    labels[3, 0] = np.nan  # an uncertain label: out of the fit and the score
    probe = ProbeSet(probe.images, labels, probe.findings, probe.patients)
    x = labels[:, :1] * 1.0 + rng.normal(0, 0.8, (40, 1))  # informative for the first finding only
    x = np.nan_to_num(x)
    result = fit_and_score(x, probe, seed=2)
    _, test = probe.split(seed=2)
    rows = test[~np.isnan(labels[test, 0])]
    first = probe.findings[0]
    assert result.auroc[first] == pytest.approx(_mann_whitney(x[rows, 0], labels[rows, 0]))
    assert result.auroc[first] > 0.7
    assert result.mean == pytest.approx(np.mean(list(result.auroc.values())))


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
    assert 0.0 <= result.mean <= 1.0 and result.train + result.test == 40


def test_errors(tmp_path, phantoms):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,cardiomegaly\nPHANTOM-000000.dcm,maybe\n")
    with pytest.raises(DataError, match="no finding columns"):
        ProbeSet.read(bad)
    with pytest.raises(DataError, match="not 1, 0, -1 or blank"):
        ProbeSet.read(bad, findings=["cardiomegaly"])
