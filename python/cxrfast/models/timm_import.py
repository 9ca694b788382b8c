"""timm, importable beside a torch its torchvision was not built for.

timm imports torchvision at import time, whose compiled operators cannot load beside a CPU torch
(PyPI's wheels are linked against CUDA torch). `import cxrfast` installs the finder that lets
torchvision's Python layer import all the same (`cxrfast.torchvision_import`), so `import timm`
works in cxrfast and in its users' code alike; `import_timm` is that import, kept as the one
place cxrfast's own modules take timm from. The compiled operators stay unavailable, as they
already were; `torchvision_operators()` says so, not a warning: no cxrfast code needs them, and a
warning on every run would only alarm (docs/drop-in.md explains the setup).
"""

from __future__ import annotations

from types import ModuleType

from cxrfast.torchvision_import import schemas_declared


def import_timm() -> ModuleType:
    import timm

    return timm


def torchvision_operators() -> bool:
    """Whether torchvision's compiled operators loaded beside this torch."""
    import_timm()
    return not schemas_declared()
