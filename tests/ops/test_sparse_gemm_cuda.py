"""The CUDA implicit-GEMM sparse convolution against the dense-masked reference (GPU only)."""

from __future__ import annotations

import pytest
import torch
from test_sparse_conv import _case

from cxrfast.ops.sparse_conv import sparse_conv2d_reference
from cxrfast.ops.sparse_gemm import sparse_conv2d_gemm
from cxrfast.ops.sparse_tiles import TileLayout, gather_tiles, scatter_tiles

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("conv,tile", [((3, 1, 1, 1, False), 1), ((3, 2, 1, 1, False), 2), ((1, 1, 0, 1, False), 4),
                                       ((7, 2, 3, 1, False), 4), ((3, 1, 2, 2, False), 2)])
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
def test_cuda_path_equals_reference(conv, tile, ratio, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "cuda")
    layout, dense, weight, bias, options = _case(5, 19, (3, 5), tile, ratio, conv, seed=6)
    layout = TileLayout(*(t.cuda() for t in (layout.batch, layout.row, layout.col)), layout.grid)
    dense, weight, bias = (t.cuda().requires_grad_() for t in (dense, weight, bias))
    tiles = gather_tiles(dense, layout, tile)
    got = scatter_tiles(sparse_conv2d_gemm(tiles, layout, weight, bias, conv[1], conv[2], conv[3]), layout)
    reference = sparse_conv2d_reference(dense, layout, weight, bias, **options)
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4)
    upstream = torch.randn_like(reference)
    params = (dense, weight, bias)
    for a, b in zip(torch.autograd.grad(got, params, upstream), torch.autograd.grad(reference, params, upstream)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
