"""cxrfast: fast, correct self-supervised pretraining on chest radiographs."""

__version__ = "0.1.0"
