"""sparse_conv2d: a convolution evaluated only at visible patches (SparK), on the tile layout.

Semantics are SparK's: the dense convolution of the zero-filled input, zeroed at masked outputs.
A tile's output needs its input window plus a halo of neighbouring positions; the halo is read
from the zero-filled map, so masked neighbours contribute zeros and visible ones their values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cxrfast.ops.sparse_depthwise import SparseDepthwise, output_positions
from cxrfast.ops.sparse_gemm import sparse_conv2d_gemm
from cxrfast.ops.sparse_tiles import TileLayout, gather_tiles, scatter_tiles, tile_windows

# Tiles at most this wide go through gather + GEMM: torch's convolution is slow on the tiny
# windows they would need (measured on this 2-core CPU, 3×3 convs at batch 8, mask 0.6: GEMM
# wins at tiles 1, 2 and 4, halo windows at 8).
GEMM_MAX_TILE = 4


def _pair(value) -> int:
    if isinstance(value, (tuple, list)):
        if value[0] != value[1]:
            raise ValueError(f"sparse ops take square kernels, strides and paddings, not {tuple(value)}")
        return int(value[0])
    return int(value)


def window(tile: int, kernel: int, stride: int, dilation: int) -> int:
    """Input positions a tile's output reads along one axis, from its first row's window on."""
    if tile % stride:
        raise ValueError(f"stride {stride} does not divide the tile size {tile}: patch size too small for this stage")
    return tile - stride + (kernel - 1) * dilation + 1


def _autocast(tiles: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Autocast's policy for convolutions, applied here because the custom autograd functions
    below would otherwise see mixed dtypes (autocast does not reach their backward): inputs,
    weight and bias in the autocast dtype. The casts are differentiable, so float32 parameters
    receive float32 gradients."""
    device = tiles.device.type
    if not torch.is_autocast_enabled(device):
        return tiles, weight, bias
    dtype = torch.get_autocast_dtype(device)
    return tiles.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


def sparse_conv2d(tiles: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None = None, stride=1,
                  padding=0, dilation=1, groups: int = 1, out_layout: TileLayout | None = None) -> Tensor:
    """(N, C_in, t, t) -> (N, C_out, t / stride, t / stride). A stride wider than the tile (patches
    smaller than the network's stride) leaves the patch grid: `out_layout` is then the layout of
    the output's cells (`layout.coarsen(stride // t)`) and the output (N_out, C_out, 1, 1)."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    tiles, weight, bias = _autocast(tiles, weight, bias)
    tile, kernel = tiles.shape[-1], weight.shape[-1]
    if out_layout is not None and out_layout is not layout:
        if groups != 1:
            raise ValueError("a grouped convolution with a stride wider than the tile is not supported: "
                             "use a patch size of at least the network's total stride")
        return sparse_conv2d_gemm(tiles, layout, weight, bias, stride, padding, dilation, out_layout)
    length = window(tile, kernel, stride, dilation)
    if padding == 0 and length <= tile:  # the window lies inside the tile: no neighbours needed
        source = tiles
    elif tile <= GEMM_MAX_TILE and groups == 1:
        return sparse_conv2d_gemm(tiles, layout, weight, bias, stride, padding, dilation)
    elif groups == tiles.shape[1] == weight.shape[0] > 1 and 2 * padding == (kernel - 1) * dilation:
        # Depthwise with "same" padding: the C++ kernel on CPU float32, else the zero-filled map.
        if tiles.device.type == "cpu" and tiles.dtype == weight.dtype == torch.float32:
            positions = output_positions(layout, tile // stride)
            return SparseDepthwise.apply(tiles, layout, positions, weight, bias, stride, padding, dilation)
        return _ZeroFilledConv.apply(tiles, layout, weight, bias, (stride, padding, dilation, groups))
    else:
        source = tile_windows(tiles, layout, length, padding)
    return F.conv2d(source, weight, bias, stride=stride, dilation=dilation, groups=groups)


class _ZeroFilledConv(torch.autograd.Function):
    """Depthwise convolutions have few FLOPs per position, so running them on the whole zero-filled
    map costs less than building halo windows (ConvNeXt's 7×7 would read 49 positions per output at
    the deepest stage). Only the tiles are saved; backward rebuilds the map."""

    @staticmethod
    def forward(ctx, tiles: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None, options) -> Tensor:
        stride, padding, dilation, groups = options
        out = F.conv2d(scatter_tiles(tiles, layout), weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(tiles, weight)
        ctx.layout, ctx.options, ctx.has_bias = layout, options, bias is not None
        return gather_tiles(out, layout, tiles.shape[-1] // stride)

    @staticmethod
    def backward(ctx, grad: Tensor):
        tiles, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.options
        dense = scatter_tiles(tiles, ctx.layout)
        grad_out = scatter_tiles(grad.contiguous(), ctx.layout)
        grad_dense, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_out, dense, weight, [weight.shape[0]] if ctx.has_bias else None, [stride] * 2, [padding] * 2,
            [dilation] * 2, False, [0, 0], groups, [True, True, ctx.has_bias])
        return gather_tiles(grad_dense, ctx.layout, tiles.shape[-1]), None, grad_weight, grad_bias, None


def sparse_conv2d_reference(dense: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None = None, stride=1,
                            padding=0, dilation=1, groups: int = 1) -> Tensor:
    """SparK's dense form: conv of the zero-filled input, zeroed at masked outputs (dense)."""
    out = F.conv2d(dense * layout.mask_at(dense.shape[-2]), weight, bias, stride=stride, padding=padding,
                   dilation=dilation, groups=groups)
    return out * layout.mask_at(out.shape[-2])
