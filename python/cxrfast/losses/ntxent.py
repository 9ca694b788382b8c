"""NT-Xent (SimCLR), with lightly's semantics, over the fused similarity log-sum-exp.

Both views are normalised inside (the gradient flows through the normalisation) and stacked as
2N rows; each row's logits are its similarities to the other 2N − 1 rows over the temperature,
its positive the other view of the same image. The loss is the cross-entropy per row, averaged
over the 2N rows. The 2N × 2N logit matrix is never stored (`cxrfast.ops.similarity_lse`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrfast.losses.reduction import check_reduction, reduce
from cxrfast.ops.similarity_lse import accumulation, similarity_lse


def nt_xent(out0: Tensor, out1: Tensor, temperature: float = 0.5, reduction: str = "mean") -> Tensor:
    """(N, D) embeddings of two views -> the loss (per row of the 2N layout with "none")."""
    if out0.shape != out1.shape or out0.ndim != 2:
        raise ValueError(f"the two views must be (N, D) alike, not {tuple(out0.shape)} and {tuple(out1.shape)}")
    z = F.normalize(accumulation(torch.cat([out0, out1])), dim=1)
    row_lse, _ = similarity_lse(z, z, 1.0 / temperature, exclude_diagonal=True)
    positives = (z * z.roll(out0.shape[0], 0)).sum(1) / temperature
    return reduce(row_lse - positives, reduction)


class NTXentLoss(nn.Module):
    def __init__(self, temperature: float = 0.5, reduction: str = "mean"):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        self.temperature = temperature
        self.reduction = check_reduction(reduction)

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        return nt_xent(out0, out1, self.temperature, self.reduction)
