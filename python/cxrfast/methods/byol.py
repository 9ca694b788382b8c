"""BYOL (Grill et al., 2020): an online network predicts its EMA target's projection of the other
view, with no negatives.

Online: backbone, projector (features → 4096, BN, ReLU → 256) and predictor (256 → 4096, BN, ReLU
→ 256). Target: a copy of backbone and projector that follows the online one by EMA
(`cxrfast.methods.ema`: 0.99 → 1 on a cosine per step, parameters only, one multi-tensor lerp;
its batch-norm statistics are its own) and gets no gradient. The loss is symmetric: each view's
prediction against the other view's target projection, 2 − 2·cos averaged over the batch, the
two directions added (the paper's L + L̃, solo-learn's).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.methods.ema import EMAFollower
from cxrfast.methods.method import Method
from cxrfast.models.heads import projection_head


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """2 − 2·cos(prediction, target), the mean over the batch; no gradient reaches the target."""
    return 2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1).mean()


class BYOL(Method):
    name = "byol"
    views = 2

    def __init__(self, backbone: nn.Module, *, projection_dim: int = 256, hidden_dim: int = 4096,
                 momentum: float = 0.99, momentum_end: float = 1.0):
        super().__init__()
        if not 0 <= momentum <= momentum_end <= 1:
            raise ConfigError(f"BYOL: momentum {momentum} -> {momentum_end} must rise within [0, 1]")
        self.backbone = backbone
        self.projection = projection_head(backbone.num_features, hidden_dim, projection_dim)
        self.prediction = projection_head(projection_dim, hidden_dim, projection_dim)
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projection = copy.deepcopy(self.projection).requires_grad_(False)
        self.ema = EMAFollower(momentum, momentum_end)

    def schedule(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        self.ema.schedule(step, total_steps)

    def training_step(self, batch: Batch) -> Tensor:
        """Both views pass each network together (batch norm sees 2N images)."""
        self.ema.follow([(self.target_backbone, self.backbone), (self.target_projection, self.projection)])
        views = torch.cat(batch.views[:2])
        p0, p1 = self.prediction(self.projection(self.backbone(views))).chunk(2)
        with torch.no_grad():
            t0, t1 = self.target_projection(self.target_backbone(views)).chunk(2)
        return byol_loss(p0, t1) + byol_loss(p1, t0)

    def backbone_copy(self) -> nn.Module:
        """The online backbone, the one BYOL evaluates."""
        return copy.deepcopy(self.backbone)
