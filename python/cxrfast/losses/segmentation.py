"""The segmentation loss: soft Dice plus binary cross-entropy, both on the logits of a (B, 1, H, W)
mask. Dice is per image, 1 − (2·Σ p·y + s) / (Σ p + Σ y + s) with p = σ(logit) and smoothing s
(1 by default, which makes an image with an empty mask and an empty prediction cost 0), then the
mean over images; BCE is the mean over every pixel. Dice weighs a small structure's pixels as
much as a large one's; BCE gives every pixel a gradient from the first step."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def soft_dice_loss(logits: Tensor, masks: Tensor, smooth: float = 1.0) -> Tensor:
    probabilities = logits.float().sigmoid().flatten(1)
    masks = masks.float().flatten(1)
    overlap = (probabilities * masks).sum(1)
    return (1 - (2 * overlap + smooth) / (probabilities.sum(1) + masks.sum(1) + smooth)).mean()


def dice_bce(logits: Tensor, masks: Tensor, smooth: float = 1.0) -> Tensor:
    """Soft Dice + BCE of (B, 1, H, W) logits against 0/1 masks of the same shape."""
    if logits.shape != masks.shape or logits.ndim != 4:
        raise ValueError(f"logits {tuple(logits.shape)} and masks {tuple(masks.shape)} must both be (B, 1, H, W)")
    return soft_dice_loss(logits, masks, smooth) + F.binary_cross_entropy_with_logits(logits.float(), masks.float())
