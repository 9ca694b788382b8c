"""SETR's progressive upsampling decoder (SETR-PUP, Zheng et al., 2021) over a timm ViT, so that
a ViT encoder (GMML's ViT-S/16, study b) can segment: the last block's normalised patch tokens
(class and register tokens dropped) laid back on their grid, then per factor of 2 of the patch
size a 3×3 convolution with batch norm and ReLU and a ×2 bilinear upsampling, and a 3×3
convolution to `out_channels` logits at the input's size (MGCA's SETR decoder has this shape)."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

WIDTHS = (256, 128, 64, 32)


class ProgressiveUpsampling(nn.Module):
    def __init__(self, backbone: nn.Module, out_channels: int = 1, widths=WIDTHS):
        super().__init__()
        patch = getattr(getattr(backbone, "patch_embed", None), "patch_size", None)
        if patch is None or not hasattr(backbone, "forward_features"):
            raise ValueError(f"{type(backbone).__name__} has no patch embedding: SETR-PUP needs a timm ViT")
        ups = math.log2(patch[0])
        if patch[0] != patch[1] or ups != int(ups) or int(ups) > len(widths):
            raise ValueError(f"SETR-PUP needs square power-of-two patches of at most {2 ** len(widths)}, not {patch}")
        self.encoder, self.patch = backbone, patch[0]
        entering = [backbone.num_features, *widths[:int(ups) - 1]]
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(w_in, w_out, 3, padding=1, bias=False), nn.BatchNorm2d(w_out),
                                                  nn.ReLU(inplace=True))
                                    for w_in, w_out in zip(entering, widths[:int(ups)]))
        self.head = nn.Conv2d(widths[int(ups) - 1], out_channels, 3, padding=1)
        self.stride = self.patch

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W), H and W multiples of the patch size -> (B, out_channels, H, W) logits."""
        b, _, height, width = images.shape
        tokens = self.encoder.forward_features(images)[:, self.encoder.num_prefix_tokens:]
        x = tokens.transpose(1, 2).reshape(b, -1, height // self.patch, width // self.patch)
        for block in self.blocks:
            x = F.interpolate(block(x), scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(x)
