"""Self-supervised methods. Each is an nn.Module with `views` (how many views of an image a
batch holds), `training_step(batch) -> loss` and `backbone_copy()`, usable from any trainer."""

from __future__ import annotations

from cxrfast.errors import ConfigError
from cxrfast.methods.method import Method
from cxrfast.methods.moco import MoCo
from cxrfast.methods.simclr import SimCLR
from cxrfast.methods.spark import SparK

METHODS: dict[str, type[Method]] = {"spark": SparK, "simclr": SimCLR, "moco": MoCo}


def create_method(name: str, backbone, **options) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}: one of {', '.join(METHODS)}")
    try:
        return METHODS[name](backbone, **options)
    except TypeError as e:  # an option the method does not take
        raise ConfigError(f"method {name}: {e}") from e


__all__ = ["METHODS", "Method", "MoCo", "SimCLR", "SparK", "create_method"]
