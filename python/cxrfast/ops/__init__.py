"""Functional ops with backend dispatch; each op keeps a plain PyTorch reference."""

from cxrfast.ops.dispatch import available_backends, select_backend
from cxrfast.ops.map_stored import map_stored, map_stored_reference

__all__ = ["available_backends", "map_stored", "map_stored_reference", "select_backend"]
