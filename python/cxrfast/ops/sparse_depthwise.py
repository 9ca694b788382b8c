"""Depthwise convolution with "same" padding at visible positions only.

ConvNeXt's 7×7 depthwise convolutions read 49 neighbours per output: halo windows would copy
them per tile, and a dense convolution computes the masked positions too. The `cpu` backend's
C++ kernel (float32) reads the neighbours in place from a channels-last, zero-filled, padded map
and computes visible outputs only; backward rebuilds the map rather than keeping it. Elsewhere
the `reference` runs: depthwise convolutions have few FLOPs per position, so torch's convolution
of the whole zero-filled map costs less than building halo windows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cxrfast import _C
from cxrfast.ops.dispatch import FLOATING, Op, Support
from cxrfast.ops.sparse_conv_reference import zero_filled_conv2d
from cxrfast.ops.sparse_tiles import TileLayout

OP = Op("sparse_depthwise", {"reference": Support(FLOATING),
                             "cpu": Support(frozenset({torch.float32}), frozenset({"cpu"}))})


# The kernel's entry points as torch operators, so torch.compile keeps them in its graph instead of
# breaking it at the numpy calls; their fake forms give the output shapes without running them.
# Shapes and positions are still checked by the binding, on every call.
@torch.library.custom_op("cxrfast::depthwise_forward", mutates_args=(), device_types="cpu")
def depthwise_forward(padded: Tensor, positions: Tensor, weight: Tensor, bias: Tensor | None, stride: int,
                      dilation: int) -> Tensor:
    """padded (B, H, W, C), positions (M, 3) (b, y, x), weight (C, k, k) -> (M, C)."""
    out = padded.new_empty(positions.shape[0], padded.shape[-1])
    _C.depthwise_forward(padded.detach().numpy(), positions.numpy(), weight.detach().contiguous().numpy(),
                         None if bias is None else bias.detach().contiguous().numpy(), stride, dilation, out.numpy())
    return out


@depthwise_forward.register_fake
def _(padded, positions, weight, bias, stride, dilation):
    return padded.new_empty(positions.shape[0], padded.shape[-1])


@torch.library.custom_op("cxrfast::depthwise_backward", mutates_args=(), device_types="cpu")
def depthwise_backward(padded: Tensor, positions: Tensor, weight: Tensor, grad_out: Tensor, stride: int,
                       dilation: int) -> tuple[Tensor, Tensor]:
    """Gradients of depthwise_forward for padded and weight."""
    grad_padded, grad_weight = torch.zeros_like(padded), torch.empty_like(weight)
    _C.depthwise_backward(padded.detach().numpy(), positions.numpy(), weight.detach().contiguous().numpy(),
                          grad_out.contiguous().numpy(), stride, dilation, grad_padded.numpy(), grad_weight.numpy())
    return grad_padded, grad_weight


@depthwise_backward.register_fake
def _(padded, positions, weight, grad_out, stride, dilation):
    return torch.empty_like(padded), torch.empty_like(weight)


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


def sparse_depthwise_conv2d(tiles: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None, stride: int,
                            padding: int, dilation: int) -> Tensor:
    """(N, C, t, t) -> (N, C, t / stride, t / stride) for weight (C, 1, k, k) and the padding
    that keeps the size ((k − 1) · dilation / 2)."""
    backend = OP.select(tiles.device, torch.promote_types(tiles.dtype, weight.dtype))
    if backend == "reference":
        return zero_filled_conv2d(tiles, layout, weight, bias, stride, padding, dilation, tiles.shape[1])
    positions = output_positions(layout, tiles.shape[-1] // stride)
    return SparseDepthwise.apply(tiles, layout, positions, weight, bias, stride, padding, dilation)


class SparseDepthwise(torch.autograd.Function):
    """`positions` are output_positions(layout, t / stride), built outside: torch.compile cannot
    trace the layout cache's mutation inside an autograd.Function."""

    @staticmethod
    def forward(ctx, tiles: Tensor, layout: TileLayout, positions: Tensor, weight: Tensor, bias: Tensor | None,
                stride: int, padding: int, dilation: int) -> Tensor:
        n, channels, tile, _ = tiles.shape
        out_tile = tile // stride
        kernels = weight.reshape(channels, *weight.shape[-2:])
        out = depthwise_forward(_padded_map(tiles, layout, padding), positions, kernels, bias, stride, dilation)
        ctx.save_for_backward(tiles, positions, weight)
        ctx.layout, ctx.options, ctx.has_bias = layout, (stride, padding, dilation), bias is not None
        return out.view(n, out_tile, out_tile, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        tiles, positions, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.options
        layout = ctx.layout
        n, channels, tile, _ = tiles.shape
        grad_out = grad.permute(0, 2, 3, 1).reshape(-1, channels)
        grad_padded, grad_weight = depthwise_backward(_padded_map(tiles, layout, padding), positions,
                                                      weight.reshape(channels, *weight.shape[-2:]), grad_out, stride,
                                                      dilation)
        b, rows, cols = layout.grid
        inside = grad_padded[:, padding:padding + rows * tile, padding:padding + cols * tile]
        blocks = inside.unflatten(2, (cols, tile)).unflatten(1, (rows, tile))
        grad_tiles = blocks[layout.batch, layout.row, :, layout.col].permute(0, 3, 1, 2)
        grad_bias = grad_out.sum(0) if ctx.has_bias else None
        return grad_tiles, None, None, grad_weight.view_as(weight), grad_bias, None, None, None
