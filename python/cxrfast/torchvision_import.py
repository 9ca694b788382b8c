"""torchvision's Python layer, importable beside a torch its compiled operators were not built for.

PyPI's torchvision wheels are linked against CUDA torch: beside a CPU torch their operators
cannot load, and `import torchvision` then fails ("operator torchvision::nms does not exist")
while declaring fake kernels for two of them (nms, qnms). So does `import timm`, which imports
torchvision for its transforms and FrozenBatchNorm2d, yet builds and runs its networks without
any compiled torchvision operator.

Importing cxrfast installs a finder that loads torchvision as usual and, only if that fails for
this reason, declares the two schemas and loads it again: then a user's own `import timm` works
as `cxrfast.models.import_timm()` does. The compiled operators stay unavailable, as they already
were, and nothing is changed where torchvision loads by itself (a CUDA torch). No torch import
happens until torchvision is imported, so `import cxrfast` stays light.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_SCHEMAS = None  # the torch.library.Library holding the declarations, for the life of the process


def declare_torchvision_schemas() -> None:
    global _SCHEMAS
    if _SCHEMAS is None:
        import torch

        library = torch.library.Library("torchvision", "FRAGMENT")
        for name in ("nms", "qnms"):
            library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SCHEMAS = library


def schemas_declared() -> bool:
    """Whether torchvision needed the schemas, i.e. its compiled operators did not load."""
    return _SCHEMAS is not None


def missing_operators(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and "torchvision::" in str(error)


class _RetryingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            self.loader.exec_module(module)
        except RuntimeError as error:
            if not missing_operators(error):
                raise
            # The failed run left half-initialised submodules behind; they load afresh.
            for name in [n for n in sys.modules if n.startswith("torchvision.")]:
                del sys.modules[name]
            declare_torchvision_schemas()
            self.loader.exec_module(module)


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate it, this wraps its loader
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _RetryingLoader(spec.loader)
        return spec


def install() -> None:
    """Before torchvision is imported: let its import succeed beside a torch it was not built for."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())
