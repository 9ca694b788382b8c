"""Where kernel tests run. Triton kernels run on CUDA tensors where a GPU is (`gpu` tests, which
tests/conftest.py skips where there is none), and in Triton's interpreter on CPU tensors where
none is (tests/conftest.py turns the interpreter on then)."""

from __future__ import annotations

import os

import pytest

TRITON_DEVICES = [
    pytest.param("cuda", marks=pytest.mark.gpu, id="cuda"),
    pytest.param("cpu", id="interpreter", marks=pytest.mark.skipif(
        os.environ.get("TRITON_INTERPRET") != "1",
        reason="Triton's interpreter is off (a GPU is here): its kernels are tested on CUDA tensors")),
]
