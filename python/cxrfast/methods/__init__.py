"""Self-supervised methods. Each is a `Method` (an `Objective` the training loop trains, its
forward `training_step(batch) -> loss`) with its own views, option checks, schedules and hooks,
usable from any trainer."""

from __future__ import annotations

from typing import Any

from torch import nn

from cxrfast.errors import ConfigError
from cxrfast.methods.byol import BYOL
from cxrfast.methods.caption import Caption
from cxrfast.methods.dino import DINO
from cxrfast.methods.gmml import GMML
from cxrfast.methods.method import Method
from cxrfast.methods.moco import MoCo
from cxrfast.methods.objective import Objective
from cxrfast.methods.simclr import SimCLR
from cxrfast.methods.spark import SparK
from cxrfast.methods.swav import SwAV

METHODS: dict[str, type[Method]] = {m.name: m for m in (SparK, SimCLR, MoCo, BYOL, SwAV, GMML, DINO, Caption)}


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}: one of {', '.join(METHODS)}")
    return METHODS[name]


def create_method(name: str, backbone: nn.Module, image_size: int = 224, **options: Any) -> Method:
    return method_class(name).build(backbone, image_size, options)


__all__ = ["BYOL", "Caption", "DINO", "GMML", "METHODS", "Method", "MoCo", "Objective", "SimCLR", "SparK", "SwAV", "create_method",
           "method_class"]
