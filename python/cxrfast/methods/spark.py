"""SparK (Tian et al., ICLR 2023): BERT-style masked image modelling for CNNs.

Patches of `patch_size` (the encoder's total stride, 32) are masked at `mask_ratio` with the same
number kept in every sample; the encoder runs on the visible patches only (cxrfast's
`SparseEncoder`, or SparK's dense simulation with `sparse=False`). Each scale's features are
densified (masked positions take a learned token per scale, then BN and a projection to the
decoder's width there), the light UNet decoder reconstructs the image (its one channel, or each CT
window), and the loss is the MSE against per-patch normalised pixels (a patch's channels
normalised together, as SparK's RGB), on masked patches only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.methods.method import Method
from cxrfast.models.backbones import input_channels
from cxrfast.models.decoders import LightDecoder
from cxrfast.nn import DenseMaskedEncoder, SparseEncoder
from cxrfast.nn.masking import spark_mask

PATCH_SIZE = 32  # the total stride of every backbone cxrfast names
DEFAULT_DECODER_WIDTH = 384  # SparK's is 768; see BENCHMARKS.md, "SparK decoder width"
_NORM_EPS = 1e-6  # SparK's per-patch normalisation: (x − mean) / sqrt(var + eps)


def patchify(images: Tensor, patch: int) -> Tensor:
    """(B, C, H, W) -> (B, H/p · W/p, C · p²), patches in row-major order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def masked_patch_loss(reconstruction: Tensor, images: Tensor, visible: Tensor, patch: int) -> Tensor:
    """Mean over masked patches of the per-pixel squared error against the patch-normalised image."""
    target = patchify(images, patch)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True, unbiased=True)
    target = (target - mean) / (var + _NORM_EPS).sqrt()
    error = (patchify(reconstruction, patch) - target).pow(2).mean(-1)
    masked = (~visible).flatten(1).to(error.dtype)
    return (error * masked).sum() / masked.sum().clamp(min=1)


class SparK(Method):
    name = "spark"
    views = 1
    # SparK's recipe augments with random resized crops only (scale 0.67–1).
    augment_defaults = dict(scale=(0.67, 1.0), rotation=0.0, brightness=0.0, contrast=0.0, gamma=0.0, blur=0.0)
    # The encoder runs the backbone's forward_features: a classifier-free head's norm (ConvNeXt's)
    # gets no gradient.
    ddp_unused_parameters = True

    def __init__(self, backbone: nn.Module, *, image_size: int | tuple[int, int] = 224, mask_ratio: float = 0.6,
                 decoder_width: int = DEFAULT_DECODER_WIDTH, sparse: bool = True):
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ConfigError(f"mask_ratio must be in (0, 1), not {mask_ratio}")
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        encoder_type = SparseEncoder if sparse else DenseMaskedEncoder
        probe = encoder_type(backbone)  # learns the strides; converts the backbone in place
        self.patch_size = probe.patch_size
        if any(s % self.patch_size for s in self.image_size):
            probe.restore()
            raise ConfigError(f"image size {self.image_size} is not divisible by SparK's patch size "
                              f"{self.patch_size} (the encoder's total stride)")
        self.grid = (self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size)
        self.mask_ratio = mask_ratio
        # Masks draw from their own generator, which a checkpoint saves: a resumed run masks as
        # the uninterrupted one would, whatever else used the global RNG in between.
        self.generator = torch.Generator()
        kept = max(1, round(self.grid[0] * self.grid[1] * (1 - mask_ratio)))
        probe.kept = kept  # a fixed count per sample: the tile layout needs no host sync
        self.encoder = probe
        channels = {e["module"]: e["num_chs"] for e in backbone.feature_info}
        stages = list(reversed(self.encoder.stages))  # deepest first, as the decoder climbs
        self.strides = [self.encoder.stage_strides[s] for s in stages]
        upsamples = int(math.log2(self.strides[0]))
        if 2**upsamples != self.strides[0] or any(a != 2 * b for a, b in zip(self.strides, self.strides[1:])):
            raise ConfigError(f"SparK's decoder needs stage strides halving from a power of two, not {self.strides}")
        self.decoder = LightDecoder(decoder_width, upsamples, input_channels(backbone))
        widths = self.decoder.widths()
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, channels[s], 1, 1)) for s in stages)
        for token in self.mask_tokens:
            nn.init.trunc_normal_(token, std=0.02, a=-0.02, b=0.02)
        self.densify_norms = nn.ModuleList(nn.BatchNorm2d(channels[s]) for s in stages)
        # The deepest scale enters the decoder directly (1×1); the others are added after 3×3s.
        self.densify_projections = nn.ModuleList(
            nn.Conv2d(channels[s], widths[i], kernel_size=1 if i == 0 else 3, padding=0 if i == 0 else 1)
            for i, s in enumerate(stages))

    @classmethod
    def check_options(cls, image_size: int, options: dict) -> None:
        super().check_options(image_size, options)
        if image_size % PATCH_SIZE:  # the constructor checks the backbone's own stride again
            raise ConfigError(f"image_size {image_size} is not divisible by SparK's patch size {PATCH_SIZE}")
        width = options.get("decoder_width", DEFAULT_DECODER_WIDTH)
        if width < PATCH_SIZE:  # the decoder halves its width at each of the patch's doublings
            raise ConfigError(f"SparK: decoder_width {width} must be at least {PATCH_SIZE}, halved once per "
                              "upsampling to the patch's full resolution")

    @classmethod
    def build(cls, backbone: nn.Module, image_size: int, options: dict) -> SparK:
        cls.check_options(image_size, options)
        return cls(backbone, image_size=image_size, **options)

    def generators(self) -> dict[str, torch.Generator]:
        return {"mask": self.generator}

    def mask(self, batch: int, device) -> Tensor:
        return spark_mask(batch, *self.grid, self.mask_ratio, generator=self.generator).to(device)

    def training_step(self, batch: Batch) -> Tensor:
        images = batch.views[0]
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(f"SparK was built for {self.image_size} images, not {tuple(images.shape[-2:])}")
        visible = self.mask(images.shape[0], images.device)
        return masked_patch_loss(self.reconstruct(images, visible), images, visible, self.patch_size)

    def reconstruct(self, images: Tensor, visible: Tensor) -> Tensor:
        features = list(reversed(self.encoder(images, visible)))  # deepest first
        scales = []
        for i, f in enumerate(features):
            active = F.interpolate(visible[:, None].to(f.dtype), size=f.shape[-2:], mode="nearest").bool()
            dense = torch.where(active, f, self.mask_tokens[i].to(f.dtype))
            scales.append(self.densify_projections[i](self.densify_norms[i](dense)))
        return self.decoder(scales)

    def backbone_copy(self) -> nn.Module:
        return self.encoder.backbone_copy()
