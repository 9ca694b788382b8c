"""The Triton implicit-GEMM sparse convolution against the dense-masked reference, forward and
every gradient. Without a GPU it runs in Triton's interpreter on CPU tensors (small shapes)."""

from __future__ import annotations

import pytest
import torch

from test_sparse_conv import check_gemm_path

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("conv,tile", [((3, 1, 1, 1, False), 1), ((3, 2, 1, 1, False), 2), ((1, 1, 0, 1, False), 2),
                                       ((3, 1, 2, 2, False), 2), ((3, 2, 1, 1, False), 1)],
                         ids=["3x3-t1", "3x3s2-t2", "1x1-t2", "dilated-t2", "3x3s2-t1-to-cells"])
def test_triton_path_equals_reference(conv, tile, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "triton")
    from cxrfast.triton import sparse_gather_gemm as kernels

    calls = []
    monkeypatch.setattr(kernels, "kernel_weight", lambda w, f=kernels.kernel_weight: calls.append(1) or f(w))
    check_gemm_path(conv, tile, batch=2, channels=5, grid=(2, 4), ratio=0.5, device=DEVICE)
    assert len(calls) == 2  # the Triton kernels ran, forward and backward
