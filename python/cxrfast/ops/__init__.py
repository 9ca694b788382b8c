"""Functional ops with backend dispatch; each op keeps a plain PyTorch reference."""

from cxrfast.ops.dispatch import Op, Support, record_backends
from cxrfast.ops.map_stored import map_stored, map_stored_reference

__all__ = ["Op", "Support", "map_stored", "map_stored_reference", "record_backends"]
