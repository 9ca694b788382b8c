"""Per-step schedules: linear warm-up then half-cosine, the shape SparK, SimCLR and MoCo use for
the learning rate (and SparK for weight decay, MoCo/BYOL for the EMA momentum)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, start: float, end: float, warmup: int = 0) -> float:
    """`start` after a linear warm-up from 0 over `warmup` steps, then a half-cosine to `end` at
    `total` steps (held there after)."""
    if step < warmup:
        return start * (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
