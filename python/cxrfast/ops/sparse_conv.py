"""sparse_conv2d: a convolution evaluated only at visible patches (SparK), on the tile layout.

Semantics are SparK's: the dense convolution of the zero-filled input, zeroed at masked outputs.
A tile's output needs its input window plus a halo of neighbouring positions; the halo is read
from the zero-filled map, so masked neighbours contribute zeros and visible ones their values.

The shape picks the path: a window inside the tile or halo windows (torch's convolution on the
tiles), the gather-GEMM (small tiles) or the depthwise op; those two choose their backend
(cxrfast.ops.dispatch). The oracle is in cxrfast.ops.sparse_conv_reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cxrfast.ops.sparse_depthwise import sparse_depthwise_conv2d
from cxrfast.ops.sparse_gemm import sparse_conv2d_gemm
from cxrfast.ops.sparse_tiles import TileLayout, tile_windows

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
        return sparse_depthwise_conv2d(tiles, layout, weight, bias, stride, padding, dilation)
    else:
        source = tile_windows(tiles, layout, length, padding)
    return F.conv2d(source, weight, bias, stride=stride, dilation=dilation, groups=groups)
