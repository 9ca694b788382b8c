"""How an EMA copy (DINO's teacher, BYOL's target) follows its online network: θ ← m·θ + (1 − m)·θ_online
over parameters only, in one multi-tensor lerp, after every optimiser step s with the momentum
m(s) of a cosine from `start` to `end` over the run's steps (DINO's and BYOL's schedule). The
loop's hooks come before a step's forward, so the update of step s runs at the start of step
s + 1, with m(s): the copy sees what it would have seen right after step s. A function of the
step, so a resumed run follows the same way."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from cxrfast.schedules import warmup_cosine


class EMAFollower:
    def __init__(self, start: float, end: float = 1.0):
        self.start, self.end = start, end
        self.momentum, self.pending = start, False

    def schedule(self, step: int, total_steps: int) -> None:
        """Before step `step`: whether the copy moves first, and by step − 1's momentum."""
        self.pending = step > 0
        self.momentum = warmup_cosine(step - 1, total_steps, self.start, self.end) if step > 0 else self.start

    @torch.no_grad()
    def follow(self, pairs: Iterable[tuple[nn.Module, nn.Module]]) -> None:
        """Move each (copy, online) pair once per step, if the step asks for it."""
        if not self.pending:
            return
        for copy, online in pairs:
            torch._foreach_lerp_(list(copy.parameters()), list(online.parameters()), 1.0 - self.momentum)
        self.pending = False
