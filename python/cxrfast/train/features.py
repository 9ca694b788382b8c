"""Features of a frozen backbone: each labelled image's centred view (LabelledViews without an
augmentation) through the classifier-free timm backbone, pooled as it pools them. The backbone
runs in eval mode under inference mode, so nothing about it moves: not its weights, not its
batch-norm statistics. The linear probe and fine-tuning's linear mode both compute them here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cxrfast.data.batch import collate
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
