"""The oracle of the sparse convolutions: SparK's definition, torch's convolution of the
zero-filled input with the masked outputs zeroed.

`sparse_conv2d_reference` takes and returns dense maps; `zero_filled_conv2d` is the same on the
tile layout (tiles scattered into the zero-filled map, torch's convolution, the visible outputs
gathered back), the `reference` backend of the gather-GEMM and depthwise ops. Its backward is
torch's own convolution backward on the map rebuilt from the tiles, so only the tiles are saved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cxrfast.ops.sparse_tiles import TileLayout, gather_tiles, scatter_tiles


def sparse_conv2d_reference(dense: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None = None, stride=1,
                            padding=0, dilation=1, groups: int = 1) -> Tensor:
    """SparK's dense form: conv of the zero-filled input, zeroed at masked outputs (dense)."""
    out = F.conv2d(dense * layout.mask_at(dense.shape[-2]), weight, bias, stride=stride, padding=padding,
                   dilation=dilation, groups=groups)
    return out * layout.mask_at(out.shape[-2])


def zero_filled_conv2d(tiles: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None, stride: int,
                       padding: int, dilation: int, groups: int, out_layout: TileLayout | None = None) -> Tensor:
    """(N, C_in, t, t) -> (N, C_out, t / stride, t / stride); with `out_layout` (a stride wider
    than the tile), (N_out, C_out, 1, 1) at its cells."""
    return _ZeroFilledConv.apply(tiles, layout, out_layout, weight, bias, (stride, padding, dilation, groups))


class _ZeroFilledConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tiles: Tensor, layout: TileLayout, out_layout: TileLayout | None, weight: Tensor,
                bias: Tensor | None, options) -> Tensor:
        stride, padding, dilation, groups = options
        out = F.conv2d(scatter_tiles(tiles, layout), weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(tiles, weight)
        ctx.layouts, ctx.options, ctx.has_bias = (layout, out_layout), options, bias is not None
        return gather_tiles(out, out_layout or layout, 1 if out_layout else tiles.shape[-1] // stride)

    @staticmethod
    def backward(ctx, grad: Tensor):
        tiles, weight = ctx.saved_tensors
        (layout, out_layout), (stride, padding, dilation, groups) = ctx.layouts, ctx.options
        grad_out = scatter_tiles(grad.contiguous(), out_layout or layout)
        grad_dense, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_out, scatter_tiles(tiles, layout), weight, [weight.shape[0]] if ctx.has_bias else None, [stride] * 2,
            [padding] * 2, [dilation] * 2, False, [0, 0], groups, [True, True, ctx.has_bias])
        return gather_tiles(grad_dense, layout, tiles.shape[-1]), None, None, grad_weight, grad_bias, None
