"""A UNet over a timm CNN's stages, for segmentation fine-tuning: the backbone's feature maps at
strides 2, 4, 8, 16, 32 (timm's `feature_info`), and from the deepest up, per stage: ×2
nearest upsampling, the skip of that stride concatenated, two 3×3 convolutions with batch norm
and ReLU (segmentation_models_pytorch's UNet decoder, which is the usual baseline); a last ×2
block without a skip back to the input's size, and a 3×3 convolution to `out_channels` logits.

The encoder is the backbone itself, run through timm's `forward_intermediates`, so its
state-dict keys are the backbone's own (`encoder.<name>`): a pretrained encoder loads into it
unchanged."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


DECODER_CHANNELS = (256, 128, 64, 32, 16)


class ConvBlock(nn.Sequential):
    def __init__(self, channels_in: int, channels_out: int):
        super().__init__(nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
                         nn.ReLU(inplace=True), nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, backbone: nn.Module, out_channels: int = 1, decoder_channels=DECODER_CHANNELS):
        super().__init__()
        info = getattr(backbone, "feature_info", None)
        if info is None:
            raise ValueError(f"{type(backbone).__name__} has no feature_info: the UNet needs a timm CNN's stages")
        strides = [i["reduction"] for i in info]
        if strides[:1] == [1] or any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise ValueError(f"the UNet needs stages at strides 2, 4, 8...; {type(backbone).__name__} has {strides}")
        if not hasattr(backbone, "forward_intermediates"):
            raise ValueError(f"{type(backbone).__name__} has no forward_intermediates: not a timm CNN the UNet can use")
        self.encoder, self.stages = backbone, len(info)
        channels = [i["num_chs"] for i in info]
        if len(decoder_channels) < len(channels):
            raise ValueError(f"{len(channels)} stages need {len(channels)} decoder widths, not {decoder_channels}")
        self.first_stride, self.stride = strides[0], strides[-1]  # the input must divide by the deepest
        widths = list(decoder_channels[:len(channels)])
        skips = [*channels[-2::-1], 0]  # the shallower stages' channels, deepest first, then none
        entering = [channels[-1], *widths[:-1]]
        self.blocks = nn.ModuleList(ConvBlock(w_in + skip, w_out) for w_in, skip, w_out in zip(entering, skips, widths))
        self.extra = nn.ModuleList(ConvBlock(widths[-1], widths[-1]) for _ in range(int(self.first_stride).bit_length() - 2))
        self.head = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W), H and W divisible by the deepest stride -> (B, out_channels, H, W) logits."""
        features = self.encoder.forward_intermediates(images, indices=self.stages, intermediates_only=True)
        x = features[-1]
        skips = [*features[-2::-1], None]
        for block, skip in zip(self.blocks, skips):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if skip is not None:
                x = torch.cat([x, skip], 1)
            x = block(x)
        for block in self.extra:  # stems that start at stride 4 or more
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.head(x)
