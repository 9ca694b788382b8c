"""The projection MLP of SimCLR and MoCo v2: features -> hidden (BN, ReLU) -> embedding."""

from __future__ import annotations

from torch import nn


def projection_head(in_features: int, hidden: int, out: int, layers: int = 2) -> nn.Sequential:
    """`layers` linear layers; every one but the last followed by BatchNorm and ReLU (SimCLR v1
    uses 2, v2 uses 3; MoCo v2 uses 2)."""
    if layers < 1:
        raise ValueError(f"a projection head needs at least one layer, not {layers}")
    blocks, width = [], in_features
    for _ in range(layers - 1):
        blocks += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        width = hidden
    blocks.append(nn.Linear(width, out))
    return nn.Sequential(*blocks)
