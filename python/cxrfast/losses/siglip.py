"""SigLIP's pairwise sigmoid loss (open_clip's semantics) over the fused softplus sums.

Every image–text pair is a binary problem on logit_scale · ⟨image, text⟩ + logit_bias: positive
for the matching pair, negative for all others, and the loss is −Σ log σ(±logit) over the batch
divided by the number of images. Since −log σ(−s) = softplus(s) and −log σ(s) = softplus(s) − s,
image i's loss is Σ_j softplus(s_ij) (every pair as a negative, the fused op) minus its positive
logit: the N×N matrix is never stored.

With `gather_distributed`, each rank's images meet every rank's texts as negatives (gathered with
gradient); the ranks' mean loss is the global batch's.
"""

from __future__ import annotations

from torch import Tensor

from cxrfast.losses.clip import check_pairs
from cxrfast.losses.distributed import gather_rows
from cxrfast.losses.image_text import ImageTextLoss
from cxrfast.losses.reduction import reduce
from cxrfast.ops.similarity import accumulation, similarity_softplus


def siglip_loss(image: Tensor, text: Tensor, logit_scale: Tensor | float, logit_bias: Tensor | float,
                labels: Tensor | None = None, reduction: str = "mean", gather_distributed: bool = False) -> Tensor:
    """(N, D) image and text features -> the loss ((N,) per image with "none"); image i's positive
    is text `labels[i]` (the identity by default)."""
    labels = check_pairs(image, text, labels)
    image32, text32 = accumulation(image), accumulation(text)
    all_text, _ = gather_rows(text32, gather_distributed)
    negatives = similarity_softplus(image32, all_text, logit_scale, bias=logit_bias)
    positives = logit_scale * (image32 * text32[labels]).sum(1) + logit_bias
    return reduce(negatives - positives, reduction)


class SigLipLoss(ImageTextLoss):
    """Owns a learnable log scale and bias, initialised as in the SigLIP paper (scale 10, bias
    −10) and the scale clamped at 100 when exponentiated; both may instead be passed per call."""

    pair_loss = staticmethod(siglip_loss)

    def __init__(self, init_logit_scale: float = 10.0, init_logit_bias: float = -10.0, max_logit_scale: float = 100.0,
                 learnable: bool = True, gather_distributed: bool = False, reduction: str = "mean"):
        super().__init__(init_logit_scale, max_logit_scale, learnable, init_logit_bias, gather_distributed, reduction)
