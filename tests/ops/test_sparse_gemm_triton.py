"""The Triton implicit-GEMM sparse convolution against the dense-masked reference, forward and
every gradient. Without a GPU it runs in Triton's interpreter on CPU tensors (small shapes)."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are defined, so set before import

from test_sparse_conv import CONVS, _case  # noqa: E402

from cxrfast.ops.sparse_gemm import sparse_conv2d_gemm  # noqa: E402
from cxrfast.ops.sparse_conv import sparse_conv2d_reference  # noqa: E402
from cxrfast.ops.sparse_tiles import gather_tiles, scatter_tiles  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("conv,tile", [((3, 1, 1, 1, False), 1), ((3, 2, 1, 1, False), 2), ((1, 1, 0, 1, False), 2),
                                       ((3, 1, 2, 2, False), 2)], ids=["3x3-t1", "3x3s2-t2", "1x1-t2", "dilated-t2"])
def test_triton_path_equals_reference(conv, tile, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "triton")
    from cxrfast.triton import sparse_gather_gemm as kernels

    calls = []
    monkeypatch.setattr(kernels, "tap_major", lambda w, f=kernels.tap_major: calls.append(1) or f(w))
    layout, dense, weight, bias, options = _case(2, 5, (2, 3), tile, 0.5, conv, seed=4)
    assert conv in CONVS
    params = [t.requires_grad_() for t in (dense, weight, bias)]
    tiles = gather_tiles(dense, layout, tile)
    got = scatter_tiles(sparse_conv2d_gemm(tiles, layout, weight, bias, conv[1], conv[2], conv[3]), layout)
    reference = sparse_conv2d_reference(dense, layout, weight, bias, **options)
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4)
    upstream = torch.randn_like(reference)
    for a, b in zip(torch.autograd.grad(got, params, upstream), torch.autograd.grad(reference, params, upstream)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert len(calls) == 2  # the Triton kernels ran, forward and backward
