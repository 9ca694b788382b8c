"""MoCo v2 (Chen et al., 2020): a query encoder trained against keys from its momentum (EMA)
copy and a queue of past keys (cxrfast's fused MoCo loss; the queue takes every rank's keys)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cxrfast.data.batch import Batch
from cxrfast.losses import MoCoLoss
from cxrfast.methods.method import Method
from cxrfast.schedules import warmup_cosine
from cxrfast.models.heads import projection_head


class MoCo(Method):
    name = "moco"
    views = 2

    def __init__(self, backbone: nn.Module, *, projection_dim: int = 128, hidden_dim: int = 2048,
                 queue_size: int = 65536, temperature: float = 0.2, momentum: float = 0.999,
                 momentum_end: float | None = None):
        super().__init__()
        self.backbone = backbone
        self.projection = projection_head(backbone.num_features, hidden_dim, projection_dim)
        self.momentum_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.momentum_projection = copy.deepcopy(self.projection).requires_grad_(False)
        self.loss = MoCoLoss(projection_dim, temperature, queue_size)
        # The EMA momentum: constant, or a half-cosine from `momentum` to `momentum_end` over the run.
        self.momentum, self.momentum_start, self.momentum_end = momentum, momentum, momentum_end

    def schedule(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        if self.momentum_end is not None:
            self.momentum = warmup_cosine(step, total_steps, self.momentum_start, self.momentum_end)

    @torch.no_grad()
    def update_momentum_encoder(self) -> None:
        """θ_k ← m·θ_k + (1 − m)·θ_q for parameters; buffers (BN statistics) are copied."""
        for online, target in ((self.backbone, self.momentum_backbone), (self.projection, self.momentum_projection)):
            torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - self.momentum)
            for b_target, b_online in zip(target.buffers(), online.buffers()):
                b_target.copy_(b_online)

    def training_step(self, batch: Batch) -> Tensor:
        """Queries from the first view, keys from the second, as MoCo v2."""
        query = self.projection(self.backbone(batch.views[0]))
        with torch.no_grad():
            self.update_momentum_encoder()
            key = self.momentum_projection(self.momentum_backbone(batch.views[1]))
        return self.loss(query, key)

    def backbone_copy(self) -> nn.Module:
        """A plain copy of the (online) backbone, for evaluation and export."""
        return copy.deepcopy(self.backbone)
