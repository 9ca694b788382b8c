"""cxrfast: fast, correct self-supervised pretraining on chest radiographs."""

from cxrfast import torchvision_import

__version__ = "0.1.0"

# Before anything imports torchvision (timm does): its Python layer must import beside a torch its
# compiled operators were not built for, in cxrfast and in its users' code.
torchvision_import.install()
