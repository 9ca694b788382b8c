"""Drop-in modules: SparK's sparse encoder (and its dense-masked reference)."""

from cxrfast.nn.sparse_encoder import DenseMaskedEncoder, SparseEncoder

__all__ = ["DenseMaskedEncoder", "SparseEncoder"]
