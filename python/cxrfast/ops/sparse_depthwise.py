"""Depthwise convolution at visible positions only, with the C++ kernel (float32, CPU).

ConvNeXt's 7×7 depthwise convolutions read 49 neighbours per output: halo windows would copy
them per tile, and a dense convolution computes the masked positions too. The kernel reads the
neighbours in place from a channels-last, zero-filled, padded map and computes visible outputs
only; backward rebuilds the map rather than keeping it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cxrfast import _C
from cxrfast.ops.sparse_tiles import TileLayout


def output_positions(layout: TileLayout, out_tile: int) -> Tensor:
    """(N * t², 3) rows (b, y, x) of the visible positions, tile by tile, row-major inside."""
    key = ("positions", out_tile)
    if key not in layout.cache:
        steps = torch.arange(out_tile, device=layout.batch.device)
        n = layout.count
        ys = (layout.row[:, None] * out_tile + steps)[:, :, None].expand(n, out_tile, out_tile)
        xs = (layout.col[:, None] * out_tile + steps)[:, None, :].expand(n, out_tile, out_tile)
        bs = layout.batch[:, None, None].expand(n, out_tile, out_tile)
        layout.cache[key] = torch.stack([bs, ys, xs], dim=-1).reshape(-1, 3).contiguous()
    return layout.cache[key]


def _padded_map(tiles: Tensor, layout: TileLayout, padding: int) -> Tensor:
    """(N, C, t, t) -> zero-filled (B, H + 2p, W + 2p, C), channels last."""
    n, channels, tile, _ = tiles.shape
    b, rows, cols = layout.grid
    padded = tiles.new_zeros(b, rows * tile + 2 * padding, cols * tile + 2 * padding, channels)
    inside = padded[:, padding:padding + rows * tile, padding:padding + cols * tile]
    blocks = inside.unflatten(2, (cols, tile)).unflatten(1, (rows, tile))  # (B, rows, t, cols, t, C)
    blocks[layout.batch, layout.row, :, layout.col] = tiles.permute(0, 2, 3, 1)
    return padded


class SparseDepthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tiles: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None, stride: int,
                padding: int, dilation: int) -> Tensor:
        n, channels, tile, _ = tiles.shape
        out_tile = tile // stride
        padded = _padded_map(tiles, layout, padding)
        positions = output_positions(layout, out_tile)
        out = tiles.new_empty(positions.shape[0], channels)
        _C.depthwise_forward(padded.numpy(), positions.numpy(), weight.detach().contiguous().view(channels, *weight.shape[-2:]).numpy(),
                             None if bias is None else bias.detach().contiguous().numpy(), stride, dilation, out.numpy())
        ctx.save_for_backward(tiles, weight)
        ctx.layout, ctx.options, ctx.has_bias = layout, (stride, padding, dilation), bias is not None
        return out.view(n, out_tile, out_tile, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        tiles, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.options
        layout = ctx.layout
        n, channels, tile, _ = tiles.shape
        padded = _padded_map(tiles, layout, padding)
        grad_out = grad.permute(0, 2, 3, 1).reshape(-1, channels).contiguous()
        grad_padded = torch.zeros_like(padded)
        grad_weight = torch.empty(channels, *weight.shape[-2:], dtype=weight.dtype)
        _C.depthwise_backward(padded.numpy(), output_positions(layout, tile // stride).numpy(),
                              weight.detach().contiguous().view(channels, *weight.shape[-2:]).numpy(), grad_out.numpy(),
                              stride, dilation, grad_padded.numpy(), grad_weight.numpy())
        b, rows, cols = layout.grid
        inside = grad_padded[:, padding:padding + rows * tile, padding:padding + cols * tile]
        blocks = inside.unflatten(2, (cols, tile)).unflatten(1, (rows, tile))
        grad_tiles = blocks[layout.batch, layout.row, :, layout.col].permute(0, 3, 1, 2)
        grad_bias = grad_out.sum(0) if ctx.has_bias else None
        return grad_tiles, None, grad_weight.view_as(weight), grad_bias, None, None, None
