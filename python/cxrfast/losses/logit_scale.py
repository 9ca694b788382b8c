"""The learnable temperature of image–text losses: an exponentiated log scale with a clamp, and
an optional bias, as open_clip's CLIP and SigLIP models own them."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LogitScale(nn.Module):
    def __init__(self, init_logit_scale: float, max_logit_scale: float = 100.0, learnable: bool = True,
                 init_logit_bias: float | None = None):
        super().__init__()
        if init_logit_scale <= 0 or max_logit_scale <= 0:
            raise ValueError("logit scales must be positive (they are exponentiated log scales)")
        log_scale = torch.tensor(math.log(init_logit_scale))
        bias = None if init_logit_bias is None else torch.tensor(float(init_logit_bias))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
            self.logit_bias = None if bias is None else nn.Parameter(bias)
        else:
            self.register_buffer("log_scale", log_scale)
            self.register_buffer("logit_bias", bias)
        self.max_log_scale = math.log(max_logit_scale)

    @property
    def logit_scale(self) -> Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def resolve(self, logit_scale: Tensor | float | None, logit_bias: Tensor | float | None
                ) -> tuple[Tensor | float, Tensor | float]:
        """The scale and bias for one call: passed values (already exponentiated, as open_clip's
        models return them) or the module's own; no bias is a bias of 0."""
        scale = self.logit_scale if logit_scale is None else logit_scale
        bias = self.logit_bias if logit_bias is None else logit_bias
        return scale, 0.0 if bias is None else bias
