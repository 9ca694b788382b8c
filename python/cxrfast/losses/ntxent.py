"""NT-Xent (SimCLR), with lightly's semantics, over the fused similarity log-sum-exp.

Both views are normalised inside (the gradient flows through the normalisation) and stacked as
2N rows; each row's logits are its similarities to the other 2N − 1 rows over the temperature,
its positive the other view of the same image. The loss is the cross-entropy per row, averaged
over the 2N rows. The 2N × 2N logit matrix is never stored (`cxrfast.ops.similarity`).

The multi-positive form (solo-learn's): rows z with an image index each; row i's positives are
the other rows of its image, and its loss is −log(Σ_positives e^s / Σ_{j≠i} e^s), i.e. the
log-sum-exp over all other rows minus the log-sum-exp over its positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrfast.losses.distributed import gather_rows
from cxrfast.losses.reduction import check_reduction, reduce
from cxrfast.ops.similarity import accumulation, similarity_lse


def nt_xent(out0: Tensor, out1: Tensor, temperature: float = 0.5, reduction: str = "mean",
            gather_distributed: bool = False) -> Tensor:
    """(N, D) embeddings of two views -> the loss (per row of the 2N layout with "none").

    With `gather_distributed` in an initialised process group, every rank's rows are the negatives
    too and each rank's loss covers its own rows (`cxrfast.losses.distributed.gather_rows`)."""
    if out0.shape != out1.shape or out0.ndim != 2:
        raise ValueError(f"the two views must be (N, D) alike, not {tuple(out0.shape)} and {tuple(out1.shape)}")
    z0, z1 = F.normalize(accumulation(out0), dim=1), F.normalize(accumulation(out1), dim=1)
    all0, offset = gather_rows(z0, gather_distributed)  # offset: this rank's rows among the gathered
    all1, _ = gather_rows(z1, gather_distributed)
    columns = torch.cat([all0, all1])  # the 2N layout: every view-0 row, then every view-1 row
    scale = 1.0 / temperature
    lse0, _ = similarity_lse(z0, columns, scale, exclude_diagonal=True, diagonal_offset=offset)
    lse1, _ = similarity_lse(z1, columns, scale, exclude_diagonal=True, diagonal_offset=all0.shape[0] + offset)
    positives = (z0 * z1).sum(1) * scale  # each row's positive is the other view of its image
    return reduce(torch.cat([lse0 - positives, lse1 - positives]), reduction)


def nt_xent_multi_positive(z: Tensor, indexes: Tensor, temperature: float = 0.5, reduction: str = "mean") -> Tensor:
    """(N, D) embeddings of all views, (N,) image index of each -> the loss."""
    if z.ndim != 2 or indexes.shape != (z.shape[0],):
        raise ValueError(f"z must be (N, D) and indexes (N,), not {tuple(z.shape)} and {tuple(indexes.shape)}")
    z = F.normalize(accumulation(z), dim=1)
    row_lse, _ = similarity_lse(z, z, 1.0 / temperature, exclude_diagonal=True)
    positives = _positive_table(indexes)
    if bool((positives < 0).all(1).any()):
        raise ValueError("every row needs a positive: an image index appears only once")
    logits = (z[:, None, :] * z[positives.clamp(min=0)]).sum(2) / temperature  # (N, most positives)
    positive_lse = torch.logsumexp(logits.masked_fill(positives < 0, float("-inf")), 1)
    return reduce(row_lse - positive_lse, reduction)


def _positive_table(indexes: Tensor) -> Tensor:
    """(N, V - 1): the other rows sharing each row's index, -1 where a row has fewer (V: the
    largest group). O(N·V), no N × N mask."""
    order = torch.argsort(indexes, stable=True)
    _, counts = torch.unique_consecutive(indexes[order], return_counts=True)
    width = int(counts.max())
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)  # per sorted row
    members = starts[:, None] + torch.arange(width, device=indexes.device)
    valid = members < (starts + torch.repeat_interleave(counts, counts))[:, None]
    table = torch.empty(len(indexes), width, dtype=torch.long, device=indexes.device)
    table[order] = torch.where(valid, order[members.clamp(max=len(order) - 1)], -1)
    table.masked_fill_(table == torch.arange(len(indexes), device=indexes.device)[:, None], -1)
    return table.sort(dim=1, descending=True).values[:, :width - 1]  # the -1s last, then cut


class NTXentLoss(nn.Module):
    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False, reduction: str = "mean"):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        self.temperature, self.gather_distributed = temperature, gather_distributed
        self.reduction = check_reduction(reduction)

    def forward(self, out0: Tensor, out1: Tensor | None = None, *, indexes: Tensor | None = None) -> Tensor:
        """`loss(out0, out1)`: two views, lightly's form; `loss(z, indexes=idx)`: any number of
        views per image, solo-learn's multi-positive form."""
        if indexes is not None:
            if out1 is not None:
                raise ValueError("pass either two views or embeddings with indexes, not both")
            return nt_xent_multi_positive(out0, indexes, self.temperature, self.reduction)
        if out1 is None:
            raise ValueError("the second view is missing")
        return nt_xent(out0, out1, self.temperature, self.reduction, self.gather_distributed)
