"""Linear mode: features computed once equal the frozen backbone on each centred view and move
nothing in it (weights and batch-norm statistics bitwise); a classifier the training loop fits on
them, put back into the backbone, gives the same logits from the images; the standardisation of
the features equals scikit-learn's StandardScaler and folds into the classifier exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from cxrfast.data.augment import ViewAugment, resize_center
from cxrfast.data.datasets import ImageFiles, LabelledViews
from cxrfast.data.labels import LabelTable
from cxrfast.data.loader import EpochLoader
from cxrfast.models import create_backbone
from cxrfast.train import TrainConfig, TrainingLoop
from cxrfast.train.classification import Classification
from cxrfast.train.features import encode
from cxrfast.train.linear_features import FeatureRows, Standardization, classifier_for, into_backbone

SIZE = 48


@pytest.fixture(scope="module")
def labelled(phantoms):
    manifest = phantoms / "labels.csv"
    table = LabelTable.read_manifest(manifest, ["Pleural Effusion", "Nodule"])
    targets, known = table.targets("ignore")
    return table, LabelledViews(ImageFiles(manifest), targets, known, [3, 0, 7, 12, 5, 9, 1, 18], size=SIZE)


def test_features_are_the_frozen_backbone_on_centred_views(labelled):
    _, views = labelled
    torch.manual_seed(0)
    backbone = create_backbone("resnet18").train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    features = encode(backbone, views, batch_size=3)
    assert backbone.training  # left as it was found
    for key, value in backbone.state_dict().items():  # batch-norm running statistics included
        assert torch.equal(value, before[key]), key
    assert features.shape == (8, backbone.num_features) and not features.requires_grad
    with torch.no_grad():
        backbone.eval()
        for k, row in enumerate(views.rows):
            expected = backbone(resize_center(views.images[int(row)][None], SIZE))[0]
            torch.testing.assert_close(features[k], expected, rtol=1e-5, atol=1e-6)


def test_a_classifier_fitted_on_features_serves_the_backbone(labelled, tmp_path):
    table, views = labelled
    torch.manual_seed(0)
    backbone = create_backbone("resnet18")
    features = encode(backbone, views)
    rows = FeatureRows(features, views)
    batch = rows[2]
    assert torch.equal(batch.targets, views.targets[7]) and batch.index.item() == 7
    task = Classification(classifier_for(backbone, len(table.findings)), table.findings)
    config = TrainConfig(out=str(tmp_path / "linear"), epochs=3, batch_size=4, optimizer="adamw", lr=0.5,
                         warmup_epochs=0, weight_decay=0.0, weight_decay_end=0.0, workers=0, log_every=1)
    result = TrainingLoop(config, task, EpochLoader(rows, 4, workers=0), run=Path(config.out),
                          device=torch.device("cpu"), progress=False).run()
    assert result.steps == 6 and result.losses[-1] != result.losses[0]
    model = into_backbone(task.model, backbone).eval()
    with torch.no_grad():
        images = torch.cat([resize_center(views.images[int(r)][None], SIZE) for r in views.rows])
        torch.testing.assert_close(model(images), task.logits(features), rtol=1e-5, atol=1e-5)


def test_bad_inputs(labelled):
    table, views = labelled
    augmented = LabelledViews(views.images, views.targets.numpy(), views.known.numpy(), views.rows,
                              augment=ViewAugment(size=SIZE))
    with pytest.raises(ValueError, match="features are of the centred view"):
        encode(create_backbone("resnet18"), augmented)
    with pytest.raises(ValueError, match="7 feature rows for 8 labelled images"):
        FeatureRows(torch.zeros(7, 512), views)


def test_standardization_is_standard_scalers_and_folds_into_the_classifier():
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-1, 3, 16)  # pooled features differ in scale by orders of magnitude
    train = torch.randn(50, 16, generator=generator) * scales + 5.0
    train[:, 3] = 2.0  # a dead unit: constant over the training images
    other = torch.randn(9, 16, generator=generator) * scales + 5.0
    standardization = Standardization.fit(train)
    scaler = StandardScaler().fit(train.double().numpy())
    np.testing.assert_allclose(standardization.mean.numpy(), scaler.mean_, rtol=1e-6)
    live = np.arange(16) != 3
    np.testing.assert_allclose(standardization.scale.numpy()[live], scaler.scale_[live], rtol=1e-4)  # eps: 1e-6
    np.testing.assert_allclose(standardization(other).numpy()[:, live], scaler.transform(other.double().numpy())[:, live],
                               rtol=1e-4, atol=1e-5)
    assert torch.isfinite(standardization(other)).all()
    classifier = torch.nn.Linear(16, 3)
    folded = standardization.folded(classifier)
    with torch.no_grad():
        torch.testing.assert_close(folded(other), classifier(standardization(other)), rtol=1e-4, atol=1e-3)
