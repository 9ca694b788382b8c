"""What image–text losses share as modules: the learnable temperature (an exponentiated log
scale with a clamp, and an optional bias, as open_clip's CLIP and SigLIP models own them), the
reduction, the gathering across ranks, and one call shape."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from cxrfast.losses.reduction import check_reduction


class ImageTextLoss(nn.Module):
    """`loss(image, text, labels=None, logit_scale=None, logit_bias=None)`: a subclass names its
    functional form as `pair_loss`; a scale and bias passed per call replace the module's own."""

    pair_loss: Callable[..., Tensor]

    def __init__(self, init_logit_scale: float, max_logit_scale: float, learnable: bool,
                 init_logit_bias: float | None, gather_distributed: bool, reduction: str):
        super().__init__()
        self.gather_distributed = gather_distributed
        self.reduction = check_reduction(reduction)
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

    def forward(self, image: Tensor, text: Tensor, labels: Tensor | None = None,
                logit_scale: Tensor | float | None = None, logit_bias: Tensor | float | None = None) -> Tensor:
        """A passed scale is already exponentiated, as open_clip's models return it; no bias is a
        bias of 0."""
        scale = self.logit_scale if logit_scale is None else logit_scale
        bias = self.logit_bias if logit_bias is None else logit_bias
        return type(self).pair_loss(image, text, scale, labels=labels, reduction=self.reduction,
                                    logit_bias=0.0 if bias is None else bias,
                                    gather_distributed=self.gather_distributed)
