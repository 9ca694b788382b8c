"""timm, importable beside a torch its torchvision was not built for.

timm imports torchvision at import time (data transforms, FrozenBatchNorm2d), yet builds and
runs its CNNs without any of torchvision's compiled operators. PyPI's torchvision wheels are
linked against CUDA torch, so beside a CPU torch their operators cannot load, and torchvision's
import then fails while declaring fake kernels for two of them (nms, qnms). Declaring those two
schemas first lets its Python layer import; the compiled operators stay unavailable, as they
already were. That is said by `torchvision_operators()`, not by a warning: no cxrfast code needs
them, and a warning on every run would only alarm (the README explains the setup).
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

# Held for the life of the process: a Library's definitions vanish when it is collected.
_TORCHVISION_SCHEMAS: torch.library.Library | None = None


def torchvision_operators() -> bool:
    """Whether torchvision's compiled operators loaded beside this torch (after `import_timm`)."""
    import_timm()
    return _TORCHVISION_SCHEMAS is None


def _declare_torchvision_schemas() -> None:
    global _TORCHVISION_SCHEMAS
    if _TORCHVISION_SCHEMAS is None:
        library = torch.library.Library("torchvision", "FRAGMENT")
        for name in ("nms", "qnms"):
            library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_SCHEMAS = library


def import_timm() -> ModuleType:
    try:
        import timm
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        # The failed import left half-initialised modules behind; import them afresh.
        for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", "timm")]:
            del sys.modules[name]
        _declare_torchvision_schemas()
        import timm
    return timm
