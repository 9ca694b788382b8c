"""Linear mode's fast path: the frozen backbone's features of every image computed once, then
only the classifier trained on them, epoch after epoch (solo-learn's linear evaluation runs the
frozen backbone on every batch of every epoch instead).

The features are `cxrfast.train.features.encode`'s (centred views, the backbone in eval and
inference mode: nothing about it moves). The trained classifier goes back into the backbone
(`into_backbone`), so linear mode exports the same timm layout as full fine-tuning.
"""

from __future__ import annotations

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


def classifier_for(backbone: nn.Module, outputs: int) -> nn.Linear:
    """A new linear classifier over the backbone's pooled features."""
    return nn.Linear(backbone.num_features, outputs)


def into_backbone(classifier: nn.Linear, backbone: nn.Module) -> nn.Module:
    """The backbone with `classifier` as its own (timm's `reset_classifier`, then the weights)."""
    backbone.reset_classifier(classifier.out_features)
    backbone.get_classifier().load_state_dict(classifier.state_dict())
    return backbone
