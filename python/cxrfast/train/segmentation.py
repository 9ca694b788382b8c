"""Fine-tuning a segmenter: the objective the training loop trains for `--task segmentation`.
The model maps a batch's views to (B, 1, H, W) mask logits (a `UNet` over a CNN's stages, SETR's
progressive upsampling over a ViT's tokens) and trains with Dice + BCE; `predict` scores each image by its Dice at σ > ½, with
an empty ground truth giving NaN (see `cxrfast.eval.dice`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cxrfast.data.batch import Batch, collate
from cxrfast.eval.dice import per_image_dice
from cxrfast.losses.segmentation import dice_bce
from cxrfast.methods import Objective
from cxrfast.models.decoders.setr_pup import ProgressiveUpsampling
from cxrfast.models.decoders.unet import UNet


class Segmentation(Objective):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @classmethod
    def for_backbone(cls, backbone: nn.Module) -> Segmentation:
        """A UNet over a (classifier-free) timm CNN's stages, SETR-PUP over a ViT's tokens."""
        is_vit = hasattr(getattr(backbone, "patch_embed", None), "patch_size") and hasattr(backbone, "blocks")
        return cls(ProgressiveUpsampling(backbone) if is_vit else UNet(backbone))

    def training_step(self, batch: Batch) -> Tensor:
        if batch.masks is None:
            raise ValueError("a segmentation batch needs masks (MaskedViews gives them)")
        return dice_bce(self.model(batch.views[0]), batch.masks)

    @torch.inference_mode()
    def predict(self, items: Dataset, *, batch_size: int = 16, device: torch.device | str = "cpu",
                autocast: torch.dtype | None = None) -> tuple[Tensor, Tensor, float]:
        """(per-image Dice (N,) float64, image rows (N,), mean loss) over `items` (centred views
        and masks), in eval mode; the training mode is restored afterwards."""
        was_training = self.training
        self.eval()
        dice, rows, losses = [], [], []
        try:
            for batch in DataLoader(items, batch_size=batch_size, shuffle=False, collate_fn=collate):
                with torch.autocast(torch.device(device).type, dtype=autocast, enabled=autocast is not None):
                    logits = self.model(batch.views[0].to(device)).float().cpu()
                losses.append(float(dice_bce(logits, batch.masks)) * len(batch))
                dice.append(torch.from_numpy(per_image_dice((logits > 0).numpy(), (batch.masks > 0.5).numpy())))
                rows.append(batch.index)
        finally:
            self.train(was_training)
        return torch.cat(dice), torch.cat(rows), sum(losses) / max(1, len(items))
