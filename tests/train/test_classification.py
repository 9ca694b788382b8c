"""The classification objective: its exported weights load into timm's own classifier, its
losses equal the formulas on the model's logits, and the training loop trains it on labelled
views as it trains the SSL methods."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cxrfast.data.batch import Batch
from cxrfast.data.datasets import ImageFiles, LabelledViews
from cxrfast.data.labels import LabelTable
from cxrfast.data.loader import EpochLoader
from cxrfast.losses import findings_bce, positive_weights
from cxrfast.models import create_backbone, import_timm
from cxrfast.train import TrainConfig, TrainingLoop
from cxrfast.train.classification import Classification

FINDINGS = ("Cardiomegaly", "Pleural Effusion", "Edema")


def _batch(classes=3, seed=0, one_hot=False):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(4, 1, 32, 32, generator=g)
    if one_hot:
        targets = F.one_hot(torch.randint(0, classes, (4,), generator=g), classes).float()
        known = torch.ones_like(targets, dtype=torch.bool)
    else:
        targets = (torch.rand(4, classes, generator=g) < 0.5).float()
        known = torch.rand(4, classes, generator=g) < 0.7
    return Batch([images], targets=targets, known=known)


def test_exported_weights_load_into_timms_classifier(tmp_path):
    torch.manual_seed(0)
    task = Classification.for_backbone(create_backbone("resnet18"), FINDINGS)
    path = tmp_path / "classifier.pt"
    torch.save(task.model.state_dict(), path)
    timm = import_timm()
    loaded = timm.create_model("resnet18", in_chans=1, num_classes=len(FINDINGS), checkpoint_path=str(path))
    images = _batch().views[0]
    torch.testing.assert_close(loaded.eval()(images), task.eval().logits(images))


def test_multi_label_loss_is_the_findings_bce_of_the_logits():
    torch.manual_seed(0)
    weights = torch.tensor([2.0, 1.0, 0.5])
    task = Classification.for_backbone(create_backbone("resnet18"), FINDINGS, pos_weight=weights).eval()
    batch = _batch()
    expected = findings_bce(task.logits(batch.views[0]), batch.targets, batch.known, weights)
    torch.testing.assert_close(task.training_step(batch), expected)
    torch.testing.assert_close(task.probabilities(batch.views[0]), torch.sigmoid(task.logits(batch.views[0])))


def test_single_label_loss_is_cross_entropy_on_the_class():
    torch.manual_seed(0)
    task = Classification.for_backbone(create_backbone("resnet18"), ("normal", "pneumonia", "COVID-19"),
                                       multi_label=False).eval()
    batch = _batch(one_hot=True)
    logits = task.logits(batch.views[0])
    expected = -torch.log_softmax(logits, 1)[torch.arange(4), batch.targets.argmax(1)].mean()
    torch.testing.assert_close(task.training_step(batch), expected)
    torch.testing.assert_close(task.probabilities(batch.views[0]).sum(1), torch.ones(4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one finding"):
        Classification.for_backbone(create_backbone("resnet18"), ())
    with pytest.raises(ValueError, match="two classes or more"):
        Classification.for_backbone(create_backbone("resnet18"), ("normal",), multi_label=False)
    with pytest.raises(ValueError, match=r"pos_weight must be \(3,\)"):
        Classification.for_backbone(create_backbone("resnet18"), FINDINGS, pos_weight=torch.ones(2))
    with pytest.raises(ValueError, match="needs targets and known"):
        task = Classification.for_backbone(create_backbone("resnet18"), FINDINGS)
        task.training_step(Batch([torch.rand(2, 1, 32, 32)]))


def test_the_training_loop_trains_it_on_labelled_views(tmp_path, phantoms):
    """The loop's first loss is the objective's loss on the loader's first batch, and its
    checkpoint holds the classifier; the loss falls over a few epochs on the phantoms."""
    manifest = phantoms / "labels.csv"
    table = LabelTable.read_manifest(manifest, ["Pleural Effusion", "Nodule"])  # 3 and 2 positives of 20
    images = ImageFiles(manifest)
    assert [s.name for s in images.sources] == table.paths
    targets, known = table.targets("ignore")
    views = LabelledViews(images, targets, known, range(len(table)), size=64)
    config = TrainConfig(out=str(tmp_path / "run"), epochs=4, batch_size=4, optimizer="adamw", lr=0.05,
                         warmup_epochs=0, weight_decay=0.0, weight_decay_end=0.0, workers=0, log_every=1)
    loader = EpochLoader(views, config.batch_size, workers=0, seed=config.seed)
    torch.manual_seed(0)
    weights = positive_weights(torch.from_numpy(targets), torch.from_numpy(known), table.findings)
    task = Classification.for_backbone(create_backbone("resnet18"), table.findings, pos_weight=weights)
    first_batch = next(iter(EpochLoader(views, config.batch_size, workers=0, seed=config.seed)))
    expected_first = copy.deepcopy(task).train().training_step(first_batch).item()
    result = TrainingLoop(config, task, loader, run=Path(config.out), device=torch.device("cpu"),
                          progress=False).run()
    assert result.steps == 20  # 5 batches of 4 per epoch
    assert result.losses[0] == pytest.approx(expected_first, rel=1e-6)
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    saved = torch.load(sorted((tmp_path / "run").glob("checkpoint-*.pt"))[-1], weights_only=False)["model"]
    torch.testing.assert_close(saved["model.fc.weight"], task.model.fc.weight)
    torch.testing.assert_close(saved["pos_weight"], weights)
