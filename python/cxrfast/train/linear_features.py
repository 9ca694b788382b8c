"""Linear mode's fast path: the frozen backbone's features of every image computed once, then
only the classifier trained on them, epoch after epoch (solo-learn's linear evaluation runs the
frozen backbone on every batch of every epoch instead).

The backbone runs in eval mode under inference mode, so nothing about it moves: not its weights,
not its batch-norm statistics. Features are of the centred view (LabelledViews without an
augmentation), pooled as the classifier-free timm backbone pools them. The trained classifier
goes back into the backbone (`into_backbone`), so linear mode exports the same timm layout as
full fine-tuning.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cxrfast.data.batch import Batch, collate
from cxrfast.data.datasets import LabelledViews


@torch.inference_mode()
def encode(backbone: nn.Module, views: LabelledViews, *, batch_size: int = 64, workers: int = 0,
           device: torch.device | str = "cpu") -> Tensor:
    """(len(views), D) float32 on the CPU: the pooled features of each item's view, in order."""
    if views.augment is not None:
        raise ValueError("linear mode's features are of the centred view: give LabelledViews without an augment")
    was_training = backbone.training
    backbone.eval()
    loader = DataLoader(views, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    try:
        return torch.cat([backbone(batch.views[0].to(device)).float().cpu() for batch in loader])
    finally:
        backbone.train(was_training)


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
