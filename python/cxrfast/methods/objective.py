"""`Objective`: what the training loop trains. Its forward is one step's loss; everything else
particular to a run reaches the loop through the hooks below, so the loop never asks which
method (or fine-tuning task) it is running. The defaults do nothing."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from cxrfast.data.batch import Batch


class Objective(nn.Module):
    # Parameters that get no gradient in some steps (a head the loss does not reach): DDP must be
    # told, or it waits for their gradients forever.
    ddp_unused_parameters: ClassVar[bool] = False

    def training_step(self, batch: Batch) -> Tensor:
        raise NotImplementedError

    def forward(self, batch: Batch) -> Tensor:  # so that DDP wraps the step
        return self.training_step(batch)

    def schedule(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        """Called before the first forward of each optimiser step `step` (0-based) of
        `total_steps`, `steps_per_epoch` to an epoch: per-step values such as an EMA momentum or
        a teacher temperature. A function of the step only, so that a resumed run follows the
        same schedule."""

    def after_backward(self, step: int) -> None:
        """Called once per optimiser step, after its last backward (and gradient clipping),
        before the optimiser steps: e.g. a layer whose gradients are dropped for a while."""

    def parameter_groups(self) -> list[dict]:
        """What the optimiser trains, in groups: {"params": [...], "lr_factor": f} (f times the
        scheduled learning rate; 1 if absent). By default one group of every parameter that
        requires a gradient (a momentum encoder does not)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def generators(self) -> dict[str, torch.Generator]:
        """The random generators of its own (masks, crops) that a checkpoint must save and the
        loop seeds per rank."""
        return {}
