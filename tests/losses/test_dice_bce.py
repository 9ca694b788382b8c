"""Dice + BCE against MONAI's DiceLoss (sigmoid, smoothing 1 in numerator and denominator, per
image) plus torch's BCE; per-image Dice against MONAI's DiceMetric with ignore_empty."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrfast.eval.dice import per_image_dice
from cxrfast.losses.segmentation import dice_bce, soft_dice_loss
from cxrfast.models import import_timm

import_timm()  # MONAI imports torchvision, which needs timm's shim beside this torch
from monai.losses import DiceLoss  # noqa: E402
from monai.metrics import DiceMetric  # noqa: E402


def _masks(seed: int, shape=(5, 1, 16, 12)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * 3
    masks = (torch.rand(shape, generator=g) > 0.6).float()
    masks[0] = 0  # an image with nothing to find
    return logits, masks


@pytest.mark.parametrize("seed", range(3))
def test_dice_bce_is_monais_dice_loss_plus_torchs_bce(seed):
    logits, masks = _masks(seed)
    reference = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0)(logits, masks)
    torch.testing.assert_close(soft_dice_loss(logits, masks), reference)
    torch.testing.assert_close(dice_bce(logits, masks), reference + F.binary_cross_entropy_with_logits(logits, masks))
    logits.requires_grad_(True)
    dice_bce(logits, masks).backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="must both be"):
        dice_bce(logits[:, 0], masks[:, 0])


@pytest.mark.parametrize("seed", range(3))
def test_per_image_dice_is_monais_with_empty_ground_truth_nan(seed):
    logits, masks = _masks(seed)
    predicted = logits > 0
    expected = DiceMetric(include_background=True, reduction="none", ignore_empty=True)(predicted.float(), masks)
    ours = per_image_dice(predicted.numpy(), masks.numpy() > 0)
    np.testing.assert_allclose(ours, expected[:, 0].double().numpy(), equal_nan=True)
    assert math.isnan(ours[0]) and not np.isnan(ours[1:]).any()
    truth = np.zeros((2, 3, 3), bool)
    truth[1, 0, 0] = True
    np.testing.assert_array_equal(per_image_dice(truth, truth), [math.nan, 1.0])  # empty: NaN, not 1
    np.testing.assert_array_equal(per_image_dice(~truth, truth), [math.nan, 0.0])
