"""Backbones (timm's, by name, with a 1-channel stem), and the heads and decoders methods put on
them (`cxrfast.models.heads`, `cxrfast.models.decoders`)."""

from cxrfast.models.backbones import BACKBONES, create_backbone, export_encoder, load_supervised
from cxrfast.models.timm_import import import_timm

__all__ = ["BACKBONES", "create_backbone", "export_encoder", "import_timm", "load_supervised"]
