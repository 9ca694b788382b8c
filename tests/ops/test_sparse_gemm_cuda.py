"""The CUDA implicit-GEMM sparse convolution against the dense-masked reference (GPU only)."""

from __future__ import annotations

import pytest
import torch
from test_sparse_conv import check_gemm_path

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("conv,tile", [((3, 1, 1, 1, False), 1), ((3, 2, 1, 1, False), 2), ((1, 1, 0, 1, False), 4),
                                       ((7, 2, 3, 1, False), 4), ((3, 1, 2, 2, False), 2), ((3, 2, 1, 1, False), 1)])
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
def test_cuda_path_equals_reference(conv, tile, ratio, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "cuda")
    check_gemm_path(conv, tile, batch=5, channels=19, grid=(4, 6), ratio=ratio, device="cuda")
