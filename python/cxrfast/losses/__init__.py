"""Contrastive losses whose memory grows with N·D, never N² (`cxrfast.ops.similarity_lse`)."""

from cxrfast.losses.clip import ClipLoss, clip_loss
from cxrfast.losses.moco import MoCoLoss
from cxrfast.losses.ntxent import NTXentLoss, nt_xent, nt_xent_multi_positive

__all__ = ["ClipLoss", "MoCoLoss", "NTXentLoss", "clip_loss", "nt_xent", "nt_xent_multi_positive"]
