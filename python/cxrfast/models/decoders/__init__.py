"""Decoders: from an encoder's feature maps back to an image (SparK's light UNet decoder) and to
segmentation masks (a UNet over a CNN's stages, SETR's progressive upsampling over a ViT's tokens)."""

from cxrfast.models.decoders.light_decoder import LightDecoder
from cxrfast.models.decoders.setr_pup import ProgressiveUpsampling
from cxrfast.models.decoders.unet import UNet

__all__ = ["LightDecoder", "ProgressiveUpsampling", "UNet"]
