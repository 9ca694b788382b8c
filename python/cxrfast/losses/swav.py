"""SwAV's swapped-prediction loss over multi-crop prototype scores (`cxrfast.ops.sinkhorn`: codes
kept as Sinkhorn scale vectors, never a second crops × batch × prototypes tensor but the gradient)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cxrfast.losses.reduction import check_reduction, reduce
from cxrfast.ops.sinkhorn import swapped_prediction


class SwaVLoss(nn.Module):
    def __init__(self, temperature: float = 0.1, epsilon: float = 0.05, iterations: int = 3,
                 crops_for_assign: Sequence[int] = (0, 1), distributed: bool = True, reduction: str = "mean"):
        super().__init__()
        if temperature <= 0 or epsilon <= 0 or iterations < 1:
            raise ValueError("temperature and epsilon must be positive, with at least one Sinkhorn iteration")
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, iterations
        self.crops_for_assign, self.distributed = tuple(crops_for_assign), distributed
        self.reduction = check_reduction(reduction)

    def forward(self, scores: Tensor | Sequence[Tensor], queue: Sequence[Tensor | None] | None = None) -> Tensor:
        """Scores against the prototypes of V crops, (V, B, K), a list of (B, K) or SwAV's
        concatenated (V·B, K) with `crops` given by the list length; `queue`: for each code crop,
        the queue's scores (Q, K) to run Sinkhorn over before the batch's, or None."""
        if isinstance(scores, Tensor) and scores.ndim == 3:
            crops = scores
        elif isinstance(scores, Tensor):
            raise ValueError(f"scores must be (V, B, K) or a list of (B, K) crops, not {tuple(scores.shape)}")
        else:
            if not scores or any(s.ndim != 2 or s.shape != scores[0].shape for s in scores):
                raise ValueError("score crops must be (B, K) tensors of one shape")
            crops = torch.stack(list(scores))
        losses = swapped_prediction(crops, self.crops_for_assign, self.temperature, self.epsilon, self.iterations,
                                    queue=queue, distributed=self.distributed)
        return reduce(losses, self.reduction)
