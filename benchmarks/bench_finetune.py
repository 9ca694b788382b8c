"""Linear evaluation, 100 epochs of a classifier on a frozen ResNet-18 (128², 64 phantoms with
Cardiomegaly common, 70/30 patient split, batch 16): cxrfast's linear mode (features of the
centred views computed once, then the classifier alone trained by the TrainingLoop, checkpoints
and metrics included) against solo-learn's way (the frozen backbone run on every batch of every
epoch, a plain torch loop). Both classifiers start from the same weights and see the same
batches in the same order with the same optimiser (AdamW, betas 0.9/0.95, constant learning
rate), so they should end with the same test AUROC; each run prints it, and the speed is only
worth having at the same AUROC. Figures are per training image-epoch; one round each (the
baseline's takes minutes).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from cxrfast.data.batch import collate
from cxrfast.data.datasets import ImageFiles, LabelledViews
from cxrfast.data.labels import LabelTable, split_by_patient
from cxrfast.data.loader import EpochLoader
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.synthetic import FINDINGS, Finding, Findings
from cxrfast.losses import findings_bce
from cxrfast.models import create_backbone
from cxrfast.train import TrainConfig, TrainingLoop
from cxrfast.train.classification import Classification
from cxrfast.eval.features import encode
from cxrfast.train.linear_features import FeatureRows, classifier_for

IMAGES, SIZE, BATCH, EPOCHS, LR = 64, 128, 16, 100, 0.05
AUROC: dict[str, float] = {}


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune")
    write_phantom_archive(out, IMAGES, rows=SIZE, findings=Findings(dict.fromkeys(FINDINGS, Finding(0.5))),
                          progress=False)
    table = LabelTable.read_manifest(out / "labels.csv", ["Cardiomegaly"])
    targets, known = table.targets("ignore")
    parts = split_by_patient(table, {"train": 0.7, "test": 0.3}, seed=0)
    images = ImageFiles(out / "labels.csv")
    torch.manual_seed(0)
    backbone = create_backbone("resnet18").eval()
    head = classifier_for(backbone, 1)
    train, test = (LabelledViews(images, targets, known, parts[p], size=SIZE) for p in ("train", "test"))
    return backbone, head, train, test


def _auroc(scores: torch.Tensor, views: LabelledViews) -> float:
    return float(roc_auc_score(views.targets[views.rows, 0].numpy(), scores[:, 0].numpy()))


def _cxrfast(backbone, head, train, test, out: Path) -> float:
    task = Classification(copy.deepcopy(head), ("Cardiomegaly",))
    rows = FeatureRows(encode(backbone, train, batch_size=BATCH), train)
    config = TrainConfig(out=str(out), epochs=EPOCHS, batch_size=BATCH, optimizer="adamw", lr=LR * 256 / BATCH,
                         warmup_epochs=0, min_lr=LR, weight_decay=0.0, weight_decay_end=0.0,
                         workers=0, checkpoint_every=10**6, log_every=10**6)
    TrainingLoop(config, task, EpochLoader(rows, BATCH, workers=0), run=out, device=torch.device("cpu"),
                 progress=False).run()
    with torch.no_grad():
        return _auroc(task.logits(encode(backbone, test)), test)


def _solo_learn(backbone, head, train, test) -> float:
    head = copy.deepcopy(head)
    optimizer = torch.optim.AdamW(head.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.0)
    loader = EpochLoader(train, BATCH, workers=0)  # the order the cxrfast run's feature rows come in
    for _ in range(EPOCHS):
        for batch in loader:
            with torch.no_grad():
                features = backbone(batch.views[0])
            loss = findings_bce(head(features), batch.targets, batch.known)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        scores = torch.cat([head(backbone(b.views[0])) for b in DataLoader(test, batch_size=BATCH, collate_fn=collate)])
    return _auroc(scores, test)


@pytest.mark.parametrize("role,label", [("cxrfast", "cxrfast linear mode: features once"),
                                        ("baseline", "solo-learn's way: frozen backbone every batch")])
def test_linear_evaluation(benchmark, tag, setting, tmp_path, role, label):
    backbone, head, train, test = setting
    benchmark.group = f"linear evaluation, ResNet-18 {SIZE}², {EPOCHS} epochs, {len(train)} training images"
    tag(role, EPOCHS * (len(train) // BATCH) * BATCH, label)
    rounds = iter(range(10**6))
    run = (lambda: _cxrfast(backbone, head, train, test, tmp_path / f"run-{next(rounds)}")) if role == "cxrfast" \
        else (lambda: _solo_learn(backbone, head, train, test))
    AUROC[label] = benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
    print(f"\n{label}: test AUROC (Cardiomegaly) {AUROC[label]:.4f}")
