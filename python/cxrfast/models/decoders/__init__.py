"""Decoders: from an encoder's feature maps back to an image (SparK's light UNet decoder) and, as
they come, to segmentation masks."""

from cxrfast.models.decoders.light_decoder import LightDecoder

__all__ = ["LightDecoder"]
