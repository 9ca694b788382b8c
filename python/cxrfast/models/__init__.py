"""Backbones for pretraining (timm's, by name)."""

from cxrfast.models.timm_import import import_timm

__all__ = ["import_timm"]
