"""SwAV (Caron et al., 2020): each code crop's assignment to learnable prototypes, by Sinkhorn–Knopp
under an equal-partition constraint, is predicted from every other crop.

Backbone, projector (features → `hidden_dim`, BN, ReLU → `feature_dim`), L2 normalisation and
`prototypes` prototypes without bias, renormalised to unit length before every step; the loss is
cxrfast's swapped prediction (`cxrfast.ops.sinkhorn`) with Sinkhorn's sums over every rank. The
prototypes get no gradient for the first `freeze_prototypes_steps` optimiser steps (SwAV's
freeze_prototypes_niters: steps, not epochs; Wolf et al.'s 313 *epochs* came from passing that
value to a trainer that counts epochs). With `queue_length` > 0, each process keeps that many of
its past embeddings per code crop from epoch `epoch_queue_starts`, and once the queue is full its
scores join Sinkhorn's samples (SwAV's queue: per process, newest first, scored with the current
prototypes). Queue and count are buffers, so a resumed run continues with them.

Multi-crop as SwAV's: 2 × 224 at scale (0.14, 1) and 6 × 96 at (0.05, 0.14), with the greyscale
augmentations DINO's module explains.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.losses import SwaVLoss
from cxrfast.methods.multicrop import GLOBAL_CROPS, MultiCropMethod
from cxrfast.models.heads import projection_head


class SwAV(MultiCropMethod):
    name = "swav"
    augment_defaults = dict(hflip=0.5, rotation=0.0, brightness=0.4, contrast=0.4, gamma=0.2, blur=0.5)

    def __init__(self, backbone: nn.Module, *, prototypes: int = 3000, feature_dim: int = 128,
                 hidden_dim: int = 2048, temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, crops_for_assign: tuple[int, ...] = (0, 1),
                 freeze_prototypes_steps: int = 313, queue_length: int = 0, epoch_queue_starts: int = 15,
                 local_crops: int = 6, local_size: int = 96, global_scale: tuple[float, float] = (0.14, 1.0),
                 local_scale: tuple[float, float] = (0.05, 0.14)):
        super().__init__()
        crops = GLOBAL_CROPS + local_crops
        assign = tuple(int(i) for i in crops_for_assign)
        if prototypes < 1 or feature_dim < 1 or local_crops < 0 or freeze_prototypes_steps < 0 or queue_length < 0:
            raise ConfigError("SwAV: prototypes and feature_dim positive; local crops, frozen steps and the queue "
                              "length not negative")
        if not assign or len(set(assign)) != len(assign) or not all(0 <= i < crops for i in assign):
            raise ConfigError(f"SwAV: crops_for_assign {list(assign)} must name distinct crops among the {crops}")
        try:
            self.loss = SwaVLoss(temperature, epsilon, sinkhorn_iterations, assign)
        except ValueError as e:
            raise ConfigError(f"SwAV: {e}") from e
        self.backbone = backbone
        self.projection = projection_head(backbone.num_features, hidden_dim, feature_dim)
        self.prototypes = nn.Linear(feature_dim, prototypes, bias=False)
        self.freeze_prototypes_steps, self.epoch_queue_starts = freeze_prototypes_steps, epoch_queue_starts
        # Buffers either way (None is left out of the state), so checkpoints hold the queue when there is one.
        self.register_buffer("queue", torch.zeros(len(assign), queue_length, feature_dim) if queue_length else None)
        self.register_buffer("queued", torch.zeros((), dtype=torch.long) if queue_length else None)
        self.step, self.epoch = 0, 0

    def schedule(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        self.step, self.epoch = step, step // steps_per_epoch

    def after_backward(self, step: int) -> None:
        if step < self.freeze_prototypes_steps:
            self.prototypes.weight.grad = None

    def training_step(self, batch: Batch) -> Tensor:
        """`batch.views`: the global crops first, then the local ones."""
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        embeddings = F.normalize(self.projection(self.crop_features(self.backbone, batch)), dim=1)
        scores = self.prototypes(embeddings)
        crops = len(batch.views)
        return self.loss(scores.reshape(crops, -1, scores.shape[1]),
                         self._queue_scores(embeddings.detach().reshape(crops, -1, embeddings.shape[1])))

    @torch.no_grad()
    def _queue_scores(self, embeddings: Tensor) -> list[Tensor | None] | None:
        """The full queue's scores for each code crop (or None before it is full), then the
        batch's embeddings pushed in, newest first."""
        if self.queue is None or self.epoch < self.epoch_queue_starts:
            return None
        length, batch = self.queue.shape[1], embeddings.shape[1]
        scores = [self.prototypes(q) for q in self.queue] if self.queued >= length else None
        newest = embeddings[list(self.loss.crops_for_assign), :length]
        self.queue.copy_(torch.cat([newest, self.queue[:, :max(0, length - batch)]], 1))
        self.queued.add_(min(batch, length))
        return scores

    def backbone_copy(self) -> nn.Module:
        """A plain copy of the backbone, for evaluation and export."""
        return copy.deepcopy(self.backbone)
