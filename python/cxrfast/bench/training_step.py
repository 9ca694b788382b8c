"""The timed round of the training-step benchmarks: the loss, its backward, the optimiser's step
where the case has one, and the gradients cleared for the next round."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def training_step(loss: Callable[[], Tensor], optimizer: torch.optim.Optimizer | None = None,
                  model: nn.Module | None = None) -> Callable[[], Tensor]:
    """A step of `loss()`; without an optimiser only forward and backward are timed, and `model`'s
    gradients are cleared. A loss that is not finite fails the case instead of being timed."""

    def step() -> Tensor:
        value = loss()
        value.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            model.zero_grad(set_to_none=True)
        if not torch.isfinite(value):
            raise AssertionError(f"the step's loss is {float(value)}")
        return value

    return step
