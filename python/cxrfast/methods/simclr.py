"""SimCLR (Chen et al., 2020): two views of each image, a projection MLP, and NT-Xent over the
2N embeddings, with every rank's embeddings as negatives under DDP (cxrfast's fused loss)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cxrfast.data.batch import Batch
from cxrfast.losses import NTXentLoss
from cxrfast.methods.method import Method
from cxrfast.models.heads import projection_head


class SimCLR(Method):
    name = "simclr"
    views = 2

    def __init__(self, backbone: nn.Module, *, projection_dim: int = 128, hidden_dim: int = 2048,
                 projection_layers: int = 2, temperature: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.projection = projection_head(backbone.num_features, hidden_dim, projection_dim, projection_layers)
        self.loss = NTXentLoss(temperature, gather_distributed=True)

    def training_step(self, batch: Batch) -> Tensor:
        """`batch.views`: two (N, C, H, W) views. Both pass the encoder together, so batch norm
        sees 2N images, as in SimCLR."""
        z0, z1 = self.projection(self.backbone(torch.cat(batch.views[:2]))).chunk(2)
        return self.loss(z0, z1)

    def backbone_copy(self) -> nn.Module:
        return copy.deepcopy(self.backbone)
