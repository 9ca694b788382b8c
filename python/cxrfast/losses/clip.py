"""CLIP's symmetric image–text loss (open_clip's semantics) over the fused log-sum-exps.

Logits are logit_scale · image · textᵀ (+ an optional bias, which cancels in the softmax but is
accepted as open_clip accepts it) with features normalised by the model; image i's target is
text `labels[i]` and text j's target image `labels[j]` (the identity by default); the loss is the
mean of the two directions' cross-entropies. In one process one pass gives both directions'
log-sum-exps (rows and columns of the same logits).

With `gather_distributed`, each rank's images are scored against every rank's texts and its texts
against every rank's images (open_clip's `local_loss` with gathered gradients): the ranks' mean
loss is the global batch's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cxrfast.losses.distributed import gather_rows
from cxrfast.losses.image_text import ImageTextLoss
from cxrfast.losses.reduction import reduce
from cxrfast.ops.similarity import accumulation, similarity_lse


def check_pairs(image: Tensor, text: Tensor, labels: Tensor | None) -> Tensor:
    """Image and text features (N, D) alike; the labels, the identity by default."""
    if image.shape != text.shape or image.ndim != 2:
        raise ValueError(f"image and text features must be (N, D) alike, not {tuple(image.shape)} and "
                         f"{tuple(text.shape)}")
    n = image.shape[0]
    if labels is None:
        return torch.arange(n, device=image.device)
    if labels.shape != (n,) or (n and (int(labels.min()) < 0 or int(labels.max()) >= n)):
        raise ValueError(f"labels must be ({n},) indices below {n}")
    return labels


def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor | float, labels: Tensor | None = None,
              reduction: str = "mean", logit_bias: Tensor | float = 0.0, gather_distributed: bool = False) -> Tensor:
    """(N, D) image and text features -> the symmetric loss ((N,) per pair, both directions
    averaged, with "none")."""
    labels = check_pairs(image, text, labels)
    image32, text32 = accumulation(image), accumulation(text)
    all_image, _ = gather_rows(image32, gather_distributed)
    if all_image is not image32:  # other ranks' rows: each direction against the gathered other side
        all_text, _ = gather_rows(text32, gather_distributed)
        image_lse, _ = similarity_lse(image32, all_text, logit_scale, bias=logit_bias)
        text_lse, _ = similarity_lse(text32, all_image, logit_scale, bias=logit_bias)
    else:
        image_lse, text_lse = similarity_lse(image32, text32, logit_scale, bias=logit_bias, columns=True)
    image_positive = logit_scale * (image32 * text32[labels]).sum(1) + logit_bias
    text_positive = logit_scale * (text32 * image32[labels]).sum(1) + logit_bias
    return reduce(((image_lse - image_positive) + (text_lse - text_positive)) / 2, reduction)


class ClipLoss(ImageTextLoss):
    """Owns a learnable log scale, initialised at log(1/0.07) and clamped at log(100) when
    exponentiated, and optionally a learnable bias; both may instead be passed per call."""

    pair_loss = staticmethod(clip_loss)

    def __init__(self, init_logit_scale: float = 1 / 0.07, max_logit_scale: float = 100.0, learnable: bool = True,
                 init_logit_bias: float | None = None, gather_distributed: bool = False, reduction: str = "mean"):
        super().__init__(init_logit_scale, max_logit_scale, learnable, init_logit_bias, gather_distributed, reduction)
