"""CLIP's symmetric image–text loss (open_clip's semantics) over the fused log-sum-exps.

Logits are logit_scale · image · textᵀ with features normalised by the model (as open_clip
expects); image i's target is text `labels[i]` and text j's target image `labels[j]` (the
identity by default); the loss is the mean of the two directions' cross-entropies. One pass
gives both directions' log-sum-exps (rows and columns of the same logits).

The module owns a learnable log scale, initialised at log(1/0.07) and clamped at log(100) when
exponentiated; an exponentiated scale may instead be passed per call, as open_clip does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cxrfast.losses.reduction import check_reduction, reduce
from cxrfast.ops.similarity_lse import accumulation, similarity_lse


def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor | float, labels: Tensor | None = None,
              reduction: str = "mean") -> Tensor:
    """(N, D) image and text features -> the symmetric loss ((N,) per pair, both directions
    averaged, with "none")."""
    if image.shape != text.shape or image.ndim != 2:
        raise ValueError(f"image and text features must be (N, D) alike, not {tuple(image.shape)} and "
                         f"{tuple(text.shape)}")
    n = image.shape[0]
    labels = torch.arange(n, device=image.device) if labels is None else labels
    if labels.shape != (n,) or (n and (int(labels.min()) < 0 or int(labels.max()) >= n)):
        raise ValueError(f"labels must be ({n},) indices below {n}")
    image32, text32 = accumulation(image), accumulation(text)
    image_lse, text_lse = similarity_lse(image32, text32, logit_scale, columns=True)
    image_positive = logit_scale * (image32 * text32[labels]).sum(1)
    text_positive = logit_scale * (text32 * image32[labels]).sum(1)
    return reduce(((image_lse - image_positive) + (text_lse - text_positive)) / 2, reduction)


class ClipLoss(nn.Module):
    def __init__(self, init_logit_scale: float = 1 / 0.07, max_logit_scale: float = 100.0, learnable: bool = True,
                 reduction: str = "mean"):
        super().__init__()
        log_scale = torch.tensor(math.log(init_logit_scale))
        self.log_scale = nn.Parameter(log_scale) if learnable else None
        if not learnable:
            self.register_buffer("fixed_log_scale", log_scale)
        self.max_log_scale = math.log(max_logit_scale)
        self.reduction = check_reduction(reduction)

    @property
    def logit_scale(self) -> Tensor:
        log_scale = self.log_scale if self.log_scale is not None else self.fixed_log_scale
        return log_scale.clamp(max=self.max_log_scale).exp()

    def forward(self, image: Tensor, text: Tensor, labels: Tensor | None = None,
                logit_scale: Tensor | None = None) -> Tensor:
        scale = self.logit_scale if logit_scale is None else logit_scale
        return clip_loss(image, text, scale, labels, self.reduction)
