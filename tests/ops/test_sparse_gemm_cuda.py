"""The CUDA implicit-GEMM sparse convolution against the dense-masked reference (GPU only)."""

from __future__ import annotations

import pytest
from helpers.sparse_conv_checks import check_gemm_path

from cxrfast.ops.dispatch import record_backends


@pytest.mark.gpu
@pytest.mark.parametrize("conv,tile", [((3, 1, 1, 1, False), 1), ((3, 2, 1, 1, False), 2), ((1, 1, 0, 1, False), 4),
                                       ((7, 2, 3, 1, False), 4), ((3, 1, 2, 2, False), 2), ((3, 2, 1, 1, False), 1)])
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
def test_cuda_path_equals_reference(conv, tile, ratio, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "cuda")
    with record_backends() as chosen:
        check_gemm_path(conv, tile, batch=5, channels=19, grid=(4, 6), ratio=ratio, device="cuda")
    assert chosen == [("sparse_gather_gemm", "cuda")]
