"""The linear probe: logistic regression on frozen features of a small labelled set, per-finding
and mean AUROC on a held-out part split by patient. It is how a pretraining run is watched (every
k epochs) and how the demo compares a pretrained encoder with a random one.

Labels come from a manifest CSV (a `path` column, finding columns of 1 / 0, with −1 or blank for
uncertain or missing: left out of that finding's fit and score) or a prepared cache, whose
manifest carries the same columns. Features are the backbone's pooled output on the centred view
(`resize_center`), standardised on the training part; scikit-learn fits and scores.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cxrfast.data.augment import resize_center
from cxrfast.data.prepared_cache import PreparedCache, is_prepared_cache
from cxrfast.data.sources import find_sources, load_image
from cxrfast.errors import DataError

_LABEL_VALUES = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "-1": math.nan, "-1.0": math.nan, "": math.nan}
_NOT_FINDINGS = {"path", "name", "patient_id", "shard", "offset", "rows", "columns"}


@dataclass(frozen=True)
class ProbeSet:
    """Images (float32 (1, H, W) in [0, 1] on access), labels (N, F) with NaN where unknown, the
    findings' names and each image's patient."""

    images: list
    labels: np.ndarray
    findings: list[str]
    patients: list[str]

    @classmethod
    def read(cls, source: str | os.PathLike, findings: list[str] | None = None) -> ProbeSet:
        root = os.fspath(source)
        if is_prepared_cache(root):
            cache = PreparedCache(root)
            records = cache.records
            images = [lambda i=i: cache[i] for i in range(len(cache))]
        else:
            sources = find_sources(root)
            records = [{"name": s.name, **s.columns} for s in sources]
            images = [lambda p=s.path: torch.from_numpy(load_image(p).pixels)[None] for s in sources]
        if not records:
            raise DataError(f"{root}: no labelled images for the probe")
        if findings is None:  # every column holding only 1 / 0 / −1 / blank
            findings = [k for k in records[0] if k not in _NOT_FINDINGS
                        and all(r[k].strip() in _LABEL_VALUES for r in records)]
        missing = [f for f in findings if f not in records[0]]
        if not findings or missing:
            raise DataError(f"{root}: no finding columns {missing or ''} for the probe (columns: {list(records[0])})")
        try:
            labels = np.array([[_LABEL_VALUES[r[f].strip()] for f in findings] for r in records], np.float64)
        except KeyError as e:
            raise DataError(f"{root}: label {e} is not 1, 0, -1 or blank") from None
        patients = [r.get("patient_id") or r.get("name", str(i)) for i, r in enumerate(records)]
        return cls(images, labels, list(findings), patients)

    def split(self, test_share: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, test rows): whole patients on one side only."""
        unique = sorted(set(self.patients))
        order = np.random.default_rng(seed).permutation(len(unique))
        test_patients = {unique[k] for k in order[: max(1, round(len(unique) * test_share))]}
        test = np.array([p in test_patients for p in self.patients])
        return np.flatnonzero(~test), np.flatnonzero(test)


@dataclass(frozen=True)
class ProbeResult:
    auroc: dict[str, float]  # per finding; findings without both classes in the test part are left out
    mean: float
    train: int
    test: int


@torch.no_grad()
def features(backbone: nn.Module, probe: ProbeSet, size: int, batch_size: int = 64,
             device: torch.device | str = "cpu") -> np.ndarray:
    """Pooled features of every probe image, (N, D) float64, the backbone in eval mode."""
    was_training = backbone.training
    backbone.eval()
    out = []
    try:
        for start in range(0, len(probe.images), batch_size):
            batch = [resize_center(load()[None], size) for load in probe.images[start:start + batch_size]]
            out.append(backbone(torch.cat(batch).to(device)).float().cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(out).double().numpy()


def fit_and_score(x: np.ndarray, probe: ProbeSet, seed: int = 0) -> ProbeResult:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train, test = probe.split(seed=seed)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    x = (x - mean) / std
    scores = {}
    for k, finding in enumerate(probe.findings):
        y = probe.labels[:, k]
        fit_rows, test_rows = train[~np.isnan(y[train])], test[~np.isnan(y[test])]
        if len(np.unique(y[fit_rows])) < 2 or len(np.unique(y[test_rows])) < 2:
            warnings.warn(f"linear probe: {finding} lacks positives or negatives in a split; left out", stacklevel=2)
            continue
        model = LogisticRegression(max_iter=2000, C=0.1, class_weight="balanced")
        model.fit(x[fit_rows], y[fit_rows])
        scores[finding] = float(roc_auc_score(y[test_rows], model.decision_function(x[test_rows])))
    if not scores:
        raise DataError("linear probe: no finding has both classes in both splits; label more images")
    return ProbeResult(scores, float(np.mean(list(scores.values()))), len(train), len(test))


def linear_probe(backbone: nn.Module, probe: ProbeSet, size: int, *, device: torch.device | str = "cpu",
                 seed: int = 0) -> ProbeResult:
    return fit_and_score(features(backbone, probe, size, device=device), probe, seed)
