"""What every self-supervised method is: an nn.Module whose forward is its training step."""

from __future__ import annotations

from torch import Tensor, nn


class Method(nn.Module):
    views: int  # views of each image a batch holds

    def training_step(self, batch: tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError

    def forward(self, batch: tuple[Tensor, ...]) -> Tensor:  # so that DDP wraps the step
        return self.training_step(batch)

    def backbone_copy(self) -> nn.Module:
        """A plain copy of the backbone, for evaluation and export."""
        raise NotImplementedError
