"""SparK's patch mask: the visible patches of a batch, the same number kept in every sample so
that the sparse encoder's tile layout needs no data-dependent count."""

from __future__ import annotations

import torch
from torch import Tensor


def spark_mask(batch: int, rows: int, columns: int, ratio: float, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor:
    """(batch, rows, columns) bool, True where visible: round((1 − ratio)·L) random patches kept
    in every sample (at least one), drawn from `generator` when one is given."""
    patches = rows * columns
    kept = max(1, round(patches * (1 - ratio)))
    order = torch.rand(batch, patches, generator=generator, device=device).argsort(dim=1)
    visible = torch.zeros(batch, patches, dtype=torch.bool, device=device)
    visible.scatter_(1, order[:, :kept], True)
    return visible.view(batch, rows, columns)
