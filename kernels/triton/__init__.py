"""Triton kernels of cxrfast, shipped in the wheel as `cxrfast.triton`. On a machine without a
GPU they run in Triton's interpreter (TRITON_INTERPRET=1) on CPU tensors, which is how the tests
exercise them here."""
