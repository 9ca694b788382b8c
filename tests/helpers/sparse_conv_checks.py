"""Sparse convolution cases and the check of the gather-GEMM path against SparK's dense-masked
reference, shared by the tests of each of its backends."""

from __future__ import annotations

import torch

from cxrfast.nn.masking import spark_mask
from cxrfast.ops.sparse_conv_reference import sparse_conv2d_reference
from cxrfast.ops.sparse_gemm import sparse_conv2d_gemm
from cxrfast.ops.sparse_tiles import TileLayout, gather_tiles, scatter_tiles


def conv_case(batch, channels, grid, tile, ratio, conv, dtype=torch.float32, seed=0):
    """A masked batch (layout, dense input) and a convolution's weight, bias and options; `conv` is
    (kernel, stride, padding, dilation, depthwise)."""
    kernel, stride, padding, dilation, depthwise = conv
    g = torch.Generator().manual_seed(seed)
    layout = TileLayout.from_mask(spark_mask(batch, *grid, ratio, generator=torch.Generator().manual_seed(seed)))
    dense = torch.randn(batch, channels, grid[0] * tile, grid[1] * tile, generator=g, dtype=dtype)
    out_channels = channels if depthwise else 4
    weight = torch.randn(out_channels, 1 if depthwise else channels, kernel, kernel, generator=g, dtype=dtype)
    bias = torch.randn(out_channels, generator=g, dtype=dtype)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=channels if depthwise else 1)
    return layout, dense, weight, bias, options


def check_gemm_path(conv, tile, *, batch, channels, grid, ratio, device="cpu", dtype=torch.float32, tolerance=1e-4):
    """sparse_conv2d_gemm (whichever backend dispatch picks) against the float32 reference: forward
    and the input, weight and bias gradients. A stride wider than the tile leaves the patch grid
    for cells of stride / tile patches."""
    layout, dense, weight, bias, options = conv_case(batch, channels, grid, tile, ratio, conv, seed=3)
    layout = TileLayout(layout.batch.to(device), layout.row.to(device), layout.col.to(device), layout.grid)
    out_layout = layout.coarsen(conv[1] // tile) if tile < conv[1] else None
    params = [t.to(device).requires_grad_() for t in (dense, weight, bias)]
    dense, weight, bias = params
    inputs = [t.to(dtype) for t in params]
    got = scatter_tiles(sparse_conv2d_gemm(gather_tiles(inputs[0], layout, tile), layout, *inputs[1:], *conv[1:4],
                                           out_layout=out_layout), out_layout or layout)
    assert got.dtype == dtype
    reference = sparse_conv2d_reference(dense, layout, weight, bias, **options)
    torch.testing.assert_close(got.float(), reference, rtol=tolerance, atol=tolerance)
    upstream = torch.randn_like(reference)
    for a, b in zip(torch.autograd.grad(got.float(), params, upstream),
                    torch.autograd.grad(reference, params, upstream)):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)
