"""Contrastive losses whose memory grows with N·D, never N² (`cxrfast.ops.similarity`), SwAV's
swapped prediction (`cxrfast.ops.sinkhorn`), and the fine-tuning losses of multi-label findings
and of segmentation masks.

`cxrfast.losses.reference` holds the naive forms they are tested and benchmarked against."""

from cxrfast.losses.clip import ClipLoss, clip_loss
from cxrfast.losses.dino import DINOLoss
from cxrfast.losses.findings import findings_bce, positive_weights
from cxrfast.losses.moco import MoCoLoss
from cxrfast.losses.ntxent import NTXentLoss, nt_xent, nt_xent_multi_positive
from cxrfast.losses.segmentation import dice_bce
from cxrfast.losses.siglip import SigLipLoss, siglip_loss
from cxrfast.losses.swav import SwaVLoss

__all__ = ["ClipLoss", "DINOLoss", "MoCoLoss", "NTXentLoss", "SigLipLoss", "SwaVLoss", "clip_loss", "dice_bce", "findings_bce",
           "nt_xent", "nt_xent_multi_positive", "positive_weights", "siglip_loss"]
