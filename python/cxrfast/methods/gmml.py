"""GMML, group-masked model learning (Atito et al., SiT 2021 and "GMML is all you need" 2022; the
pretraining of SPCXR, study b): a vision transformer reconstructs each view from a corrupted copy.

Each of the two views is corrupted on its own (`cxrfast.nn.group_masking`: rectangles over
U(0.5, 0.75) of the image filled with N(0, 1) noise, or, for half the images, 30% pasted from
another image of the same view), in units of the batch's own mean and standard deviation, so
the noise is N(0, 1) after normalisation as in GMML, while the backbone sees images on the scale
fine-tuning gives it. The token outputs of `blocks` (1-based; GMML's 6, 8, 10, 12) are averaged
and normalised by the backbone's final norm; a head of 3 × (Linear + GELU) and a transposed
convolution of the patch size maps each token back to its pixels, and the loss is the L1 error
against the clean normalised view on the corrupted pixels only.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.methods.method import Method
from cxrfast.models.backbones import input_channels
from cxrfast.nn.group_masking import group_corruption


def masked_l1(reconstruction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the pixels where `mask` (broadcast over channels) is True."""
    mask = mask.expand_as(target).to(reconstruction.dtype)
    return ((reconstruction - target).abs() * mask).sum() / mask.sum().clamp(min=1)


class ReconstructionHead(nn.Module):
    """GMML's pixel head: tokens (B, L, D) on an h × w grid -> (B, channels, h·p, w·p)."""

    def __init__(self, dim: int, patch: int, channels: int = 1):
        super().__init__()
        self.mlp = nn.Sequential(*(m for _ in range(3) for m in (nn.Linear(dim, dim), nn.GELU())))
        self.to_pixels = nn.ConvTranspose2d(dim, channels, kernel_size=patch, stride=patch)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        x = self.mlp(tokens)
        return self.to_pixels(x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid))


class GMML(Method):
    name = "gmml"
    views = 2
    # GMML's two crops: random resized at scale (0.05, 1) (its default without local crops), a
    # flip, light jitter and a rare blur; nothing that changes anatomy's orientation.
    augment_defaults = dict(scale=(0.05, 1.0), hflip=0.5, rotation=0.0, brightness=0.1, contrast=0.1, gamma=0.0,
                            blur=0.1)

    def __init__(self, backbone: nn.Module, *, blocks: tuple[int, ...] = (6, 8, 10, 12),
                 share: tuple[float, float] = (0.5, 0.75), replace: float = 0.5, replace_share: float = 0.3,
                 max_block: float = 0.3, align: int = 1):
        super().__init__()
        if not hasattr(backbone, "forward_intermediates") or not hasattr(backbone, "blocks"):
            raise ConfigError(f"GMML needs a vision transformer (e.g. vit_small), not {type(backbone).__name__}")
        depth = len(backbone.blocks)
        if not blocks or any(not 1 <= b <= depth for b in blocks):
            raise ConfigError(f"blocks {list(blocks)}: the backbone has blocks 1 to {depth}")
        if not 0 < share[0] <= share[1] < 1 or not 0 <= replace <= 1 or not 0 < replace_share < 1 \
                or not 0 < max_block <= 1 or align < 1:
            raise ConfigError("GMML's corruption: share within (0, 1) and ordered, replace in [0, 1], "
                              "replace_share and max_block in (0, 1], align at least 1")
        self.backbone = backbone
        self.blocks = [b - 1 for b in blocks]
        self.patch = backbone.patch_embed.patch_size[0]
        self.corruption = dict(share=tuple(share), replace=replace, replace_share=replace_share, max_block=max_block,
                               align=align)
        self.head = ReconstructionHead(backbone.embed_dim, self.patch, input_channels(backbone))
        self.generator = torch.Generator()  # the corruption's: saved with every checkpoint

    def generators(self) -> dict[str, torch.Generator]:
        return {"corruption": self.generator}

    def features(self, images: Tensor) -> Tensor:
        """(B, L, D) patch tokens: the mean of the chosen blocks' outputs, then the final norm."""
        outputs = self.backbone.forward_intermediates(images, indices=self.blocks, norm=False, output_fmt="NLC",
                                                      intermediates_only=True)
        return self.backbone.norm(torch.stack(outputs).mean(0))

    def training_step(self, batch: Batch) -> Tensor:
        clean = torch.cat(batch.views[:2])
        mean, std = clean.mean().detach(), clean.std().detach().clamp(min=1e-6)
        target = (clean - mean) / std
        corrupted, masks = zip(*(group_corruption(view, generator=self.generator, **self.corruption)
                                 for view in target.chunk(2)))  # donors from the same view, as GMML
        h, w = clean.shape[-2] // self.patch, clean.shape[-1] // self.patch
        reconstruction = self.head(self.features(torch.cat(corrupted) * std + mean), (h, w))
        return masked_l1(reconstruction, target, torch.cat(masks))

    def backbone_copy(self) -> nn.Module:
        return copy.deepcopy(self.backbone)
