"""The linear probe: logistic regression on frozen features of a small labelled set, per-finding
and mean AUROC on a held-out part split by patient. It is how a pretraining run is watched (every
k epochs) and how the demo compares a pretrained encoder with a random one.

Labels are a `LabelTable` read from a manifest CSV or a prepared cache's manifest, which carries
the source manifest's columns; uncertain (−1) and blank labels are left out of that finding's
fit and score. The split is `split_by_patient`'s, and a label fraction below 1 fits on the nested
subset `label_fraction_subsets` draws from the training part. Features are the backbone's pooled
output on the centred view (`cxrfast.train.features.encode`), standardised on the rows fitted;
scikit-learn fits and scores. A finding without both classes among the rows fitted or scored has an undefined
AUROC: NaN in the result, left out of the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cxrfast.data.datasets import LabelledViews
from cxrfast.data.labelled_images import LabelledImages
from cxrfast.data.labels import label_fraction_subsets, split_by_patient
from cxrfast.errors import DataError
from cxrfast.train.features import encode


@dataclass(frozen=True)
class ProbeSet(LabelledImages):
    """The probe's labelled images (`LabelledImages.read` reads them), its labels and its split."""

    @property
    def labels(self) -> np.ndarray:
        """(images, findings) float64: 1 or 0, NaN where uncertain or blank."""
        targets, counted = self.table.targets("ignore")
        return np.where(counted, targets, np.nan)

    @property
    def patients(self) -> list[str]:
        return self.table.patients

    def split(self, test_share: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, test rows): whole patients on one side only."""
        parts = split_by_patient(self.table, {"train": 1 - test_share, "test": test_share}, seed)
        return parts["train"], parts["test"]


@dataclass(frozen=True)
class ProbeResult:
    auroc: dict[str, float]  # per finding; NaN where it lacks a class among the rows fitted or scored
    mean: float  # over the findings with an AUROC
    train: int  # images fitted on (the label fraction of the training part)
    test: int
    label_fraction: float = 1.0


def features(backbone: nn.Module, probe: ProbeSet, size: int, batch_size: int = 64,
             device: torch.device | str = "cpu") -> np.ndarray:
    """Pooled features of every probe image's centred view, (N, D) float64 (`encode`'s)."""
    targets, counted = probe.table.targets("ignore")
    views = LabelledViews(probe.images, targets, counted, range(len(probe.table)), size=size)
    return encode(backbone, views, batch_size=batch_size, device=device).double().numpy()


def fit_and_score(x: np.ndarray, probe: ProbeSet, seed: int = 0, label_fraction: float = 1.0) -> ProbeResult:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train, test = probe.split(seed=seed)
    train = label_fraction_subsets(probe.table, train, (label_fraction,), seed)[label_fraction]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    x = (x - mean) / std
    labels = probe.labels
    scores = {}
    for k, finding in enumerate(probe.findings):
        y = labels[:, k]
        fit_rows, test_rows = train[~np.isnan(y[train])], test[~np.isnan(y[test])]
        if len(np.unique(y[fit_rows])) < 2 or len(np.unique(y[test_rows])) < 2:
            scores[finding] = math.nan
            continue
        model = LogisticRegression(max_iter=2000, C=0.1, class_weight="balanced")
        model.fit(x[fit_rows], y[fit_rows])
        scores[finding] = float(roc_auc_score(y[test_rows], model.decision_function(x[test_rows])))
    defined = [s for s in scores.values() if not math.isnan(s)]
    if not defined:
        raise DataError("linear probe: no finding has both classes in both the fitted and the scored images; "
                        "label more images")
    return ProbeResult(scores, float(np.mean(defined)), len(train), len(test), label_fraction)


def linear_probe(backbone: nn.Module, probe: ProbeSet, size: int, *, device: torch.device | str = "cpu",
                 seed: int = 0, label_fraction: float = 1.0) -> ProbeResult:
    return fit_and_score(features(backbone, probe, size, device=device), probe, seed, label_fraction)
