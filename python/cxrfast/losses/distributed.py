"""Gathered negatives across ranks, with the gradient flowing back to the rank that owns them."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
from torch import Tensor


def gather_rows(rows: Tensor, enabled: bool) -> tuple[Tensor, int]:
    """Every rank's rows in rank order and where this rank's rows start among them; `(rows, 0)`
    when not enabled or outside a process group of two or more.

    The gather's backward returns each rank its rows' gradient summed over every rank's loss, so
    the ranks' mean loss and DDP's averaged parameter gradients are those of one process holding
    the global batch. Ranks must hold equal numbers of rows."""
    if not (enabled and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return rows, 0
    return torch.cat(dist_nn.all_gather(rows)), dist.get_rank() * rows.shape[0]
