"""Optimisers: AdamW (torch), LAMB and LARS (timm's implementations, which SparK and SimCLR's
recipes use). Biases and normalisation parameters get no weight decay, and LARS does not adapt
their rate: the usual exclusions of those papers."""

from __future__ import annotations

import torch
from torch import nn

from cxrfast.errors import ConfigError
from cxrfast.models import import_timm


def parameter_groups(model: nn.Module) -> list[dict]:
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "decays": True}, {"params": no_decay, "decays": False, "weight_decay": 0.0}]


def create_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = parameter_groups(model)
    for group in groups:
        group.setdefault("weight_decay", weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    import_timm()  # timm.optim imports timm, which needs its torchvision shim first
    from timm import optim
    if name == "lamb":
        return optim.Lamb(groups, lr=lr, betas=(0.9, 0.95), max_grad_norm=None)
    if name == "lars":  # trust ratios only where weight decay applies (timm's default)
        return optim.Lars(groups, lr=lr, momentum=0.9, trust_coeff=0.001)
    raise ConfigError(f"unknown optimizer {name!r}: one of adamw, lamb, lars")
