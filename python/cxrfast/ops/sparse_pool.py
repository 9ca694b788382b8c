"""Max and average pooling at visible patches (SparK), on the tile layout.

Max pooling reads masked neighbours as the zeros of the zero-filled map and the image border as
-inf, as torch pads; average pooling divides by the full kernel (count_include_pad)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from cxrfast.ops.sparse_conv import _pair, window
from cxrfast.ops.sparse_tiles import TileLayout, tile_windows


def _source(tiles: Tensor, layout: TileLayout, kernel: int, stride: int, padding: int, dilation: int,
            pad_value: float) -> Tensor:
    tile = tiles.shape[-1]
    length = window(tile, kernel, stride, dilation)
    if padding == 0 and length <= tile:
        return tiles
    return tile_windows(tiles, layout, length, padding, pad_value)


def sparse_max_pool2d(tiles: Tensor, layout: TileLayout, kernel_size, stride=None, padding=0, dilation=1) -> Tensor:
    kernel = _pair(kernel_size)
    stride, padding, dilation = _pair(stride if stride is not None else kernel), _pair(padding), _pair(dilation)
    source = _source(tiles, layout, kernel, stride, padding, dilation, float("-inf"))
    return F.max_pool2d(source, kernel, stride, 0, dilation)


def sparse_avg_pool2d(tiles: Tensor, layout: TileLayout, kernel_size, stride=None, padding=0,
                      count_include_pad: bool = True) -> Tensor:
    kernel = _pair(kernel_size)
    stride, padding = _pair(stride if stride is not None else kernel), _pair(padding)
    if padding and not count_include_pad:
        raise ValueError("sparse_avg_pool2d with padding needs count_include_pad=True")
    return F.avg_pool2d(_source(tiles, layout, kernel, stride, padding, 1, 0.0), kernel, stride, 0)
