"""Heads on an encoder's pooled features: the projection MLPs of the contrastive methods and, as
they come, DINO's, BYOL's predictor and SwAV's prototypes."""

from cxrfast.models.heads.dino import DINOHead
from cxrfast.models.heads.projection import projection_head

__all__ = ["DINOHead", "projection_head"]
