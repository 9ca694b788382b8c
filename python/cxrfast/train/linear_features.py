"""Linear mode's fast path: the frozen backbone's features of every image computed once, then
only the classifier trained on them, epoch after epoch (solo-learn's linear evaluation runs the
frozen backbone on every batch of every epoch instead).

The features are `cxrfast.train.features.encode`'s (centred views, the backbone in eval and
inference mode: nothing about it moves), standardised with the training images' mean and
standard deviation before the classifier sees them: MAE's linear probe does the same with a
batch norm without affine parameters, because pooled features of different encoders differ in
scale by orders of magnitude (a random ResNet's most of all), and one learning rate cannot suit
them all. The trained classifier, with the standardisation folded into its weights, goes back
into the backbone (`into_backbone`), so linear mode exports the same timm layout as full
fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from cxrfast.data.batch import Batch
from cxrfast.data.datasets import LabelledViews


class FeatureRows(Dataset):
    """Item k: a `Batch` of feature row k (as the one view), with `views`' labels for it."""

    def __init__(self, features: Tensor, views: LabelledViews):
        if len(features) != len(views):
            raise ValueError(f"{len(features)} feature rows for {len(views)} labelled images")
        rows = torch.from_numpy(views.rows)
        self.features, self.targets, self.known, self.rows = features, views.targets[rows], views.known[rows], rows

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> Batch:
        return Batch([self.features[index]], targets=self.targets[index], known=self.known[index],
                     index=self.rows[index])


@dataclass(frozen=True)
class Standardization:
    """(features - mean) / scale, with the mean and scale of the features it was fitted to."""

    mean: Tensor
    scale: Tensor
    eps = 1e-6  # as MAE's BatchNorm1d: a constant feature stays 0, not nan

    @classmethod
    def fit(cls, features: Tensor) -> Standardization:
        mean = features.double().mean(0)
        variance = features.double().var(0, unbiased=False)
        return cls(mean.float(), (variance + cls.eps).sqrt().float())

    def __call__(self, features: Tensor) -> Tensor:
        return (features - self.mean) / self.scale

    def folded(self, classifier: nn.Linear) -> nn.Linear:
        """The classifier that gives on raw features what `classifier` gives on standardised ones."""
        folded = nn.Linear(classifier.in_features, classifier.out_features)
        with torch.no_grad():
            weight = classifier.weight.double() / self.scale.double()
            folded.weight.copy_(weight)
            folded.bias.copy_(classifier.bias.double() - weight @ self.mean.double())
        return folded


def classifier_for(backbone: nn.Module, outputs: int) -> nn.Linear:
    """A new linear classifier over the backbone's pooled features."""
    return nn.Linear(backbone.num_features, outputs)


def into_backbone(classifier: nn.Linear, backbone: nn.Module) -> nn.Module:
    """The backbone with `classifier` as its own (timm's `reset_classifier`, then the weights)."""
    backbone.reset_classifier(classifier.out_features)
    backbone.get_classifier().load_state_dict(classifier.state_dict())
    return backbone
