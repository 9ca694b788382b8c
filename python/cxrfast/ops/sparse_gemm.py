"""Sparse convolution as gather + GEMM over visible positions, for small tiles.

On the deep stages a tile is 1 or 2 positions wide, so a convolution over halo windows feeds
torch's convolution tiny spatial maps, which it runs slowly. Here every output position gathers
its k×k input positions through a neighbour table (masked or outside positions read a zero row)
and one GEMM applies the weight. Backward recomputes the gather instead of keeping it, so the
saved state stays O(visible positions × channels).

One autograd function serves every backend; each backend brings a forward and a backward launcher
on the same laid-out tensors: position rows (M_in + 1, C) whose last row is zero, the neighbour
table (M_out, K), the weight tap-major (K * C_in, C_out). `cpu` is torch's gather + GEMM (any
device), `triton` and `cuda` implicit-GEMM kernels, `reference` the zero-filled convolution.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cxrfast.ops.dispatch import FLOATING, Op, Support
from cxrfast.ops.sparse_conv_reference import zero_filled_conv2d
from cxrfast.ops.sparse_tiles import TileLayout

# Triton's interpreter reads bfloat16 as raw bits in tl.dot, so bfloat16 is left to torch's GEMM.
OP = Op("sparse_gather_gemm", {"reference": Support(FLOATING), "cpu": Support(FLOATING),
                               "triton": Support(frozenset({torch.float32, torch.float16})),
                               "cuda": Support(frozenset({torch.float32}), frozenset({"cuda"}))})


def neighbours(layout: TileLayout, tile: int, kernel: int, stride: int, padding: int, dilation: int,
               out_layout: TileLayout | None = None) -> Tensor:
    """(M_out, k²) row of each output position's inputs in the (N * t², C) position rows; N * t²
    (one past the last row) where the input is masked or outside the image. Outputs are the
    positions of `out_layout`'s cells (one each) when the stride leaves the patch grid, else of
    the input tiles (t / stride each)."""
    out_layout = layout if out_layout is None else out_layout
    # The batch size stays out of the key: hashing it would pin it in a torch.compile graph.
    key = ("neighbours", tile, kernel, stride, padding, dilation, out_layout.grid[1:])
    if key in layout.cache:
        return layout.cache[key]
    device = layout.batch.device
    b, grid_rows, grid_cols = layout.grid
    n = layout.count
    out_tile = tile // stride if out_layout is layout else 1
    if out_layout.grid[1] * out_tile * stride != grid_rows * tile:
        raise ValueError(f"stride {stride} does not take {tile}-wide tiles on a {grid_rows}-row grid to "
                         f"{out_tile}-wide tiles on a {out_layout.grid[1]}-row grid")
    positions = torch.full((b, grid_rows * tile + 2 * padding, grid_cols * tile + 2 * padding), n * tile * tile,
                           dtype=torch.int64, device=device)
    steps = torch.arange(tile, device=device)
    rows = (layout.row[:, None] * tile + steps)[:, :, None] + padding
    cols = (layout.col[:, None] * tile + steps)[:, None, :] + padding
    positions[layout.batch[:, None, None], rows, cols] = torch.arange(n * tile * tile, device=device).view(n, tile, tile)
    out_steps = torch.arange(out_tile, device=device)
    taps = torch.arange(kernel, device=device) * dilation
    # Output position y reads padded input rows y * stride + tap.
    ys = ((out_layout.row[:, None] * out_tile + out_steps) * stride)[:, :, None] + taps  # (N_out, t_out, k)
    xs = ((out_layout.col[:, None] * out_tile + out_steps) * stride)[:, :, None] + taps
    table = positions[out_layout.batch[:, None, None, None, None], ys[:, :, None, :, None], xs[:, None, :, None, :]]
    layout.cache[key] = table = table.reshape(-1, kernel * kernel)
    return table


def tap_major(weight: Tensor) -> Tensor:
    """(C_out, C_in, k, k) -> (C_out, k * k * C_in): column k * C_in + c holds tap k of channel c.
    Each row's small transpose stays in cache (a (k², C_out) transpose of the whole weight would not)."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def kernel_weight(weight: Tensor) -> Tensor:
    """(k * k * C_in, C_out): the tap-major weight the launchers read (a transposed view; the
    kernels make it contiguous)."""
    return tap_major(weight).t()


def from_tap_major(grad: Tensor, weight: Tensor) -> Tensor:
    """The inverse of tap_major, for the weight's gradient."""
    out_channels, in_channels, kernel, _ = weight.shape
    return grad.reshape(out_channels, kernel, kernel, in_channels).permute(0, 3, 1, 2)


class _TorchLaunchers:
    """The `cpu` backend: the gathered operand materialised, torch's GEMM, index_add_ back."""

    @staticmethod
    def _gather(rows: Tensor, table: Tensor) -> Tensor:
        """(M_out, K * C), tap-major like the weight: each output's k² input rows side by side."""
        return rows[table].view(table.shape[0], -1)

    @staticmethod
    def forward(rows: Tensor, table: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        out = torch.mm(_TorchLaunchers._gather(rows, table), weight)
        return out + bias if bias is not None else out

    @staticmethod
    def backward(rows: Tensor, table: Tensor, weight: Tensor, grad_out: Tensor) -> tuple[Tensor, Tensor]:
        grad_weight = torch.mm(grad_out.t(), _TorchLaunchers._gather(rows, table)).t()
        grad_columns = torch.mm(grad_out, weight.t()).view(-1, rows.shape[1])
        return torch.zeros_like(rows).index_add_(0, table.reshape(-1), grad_columns), grad_weight


def _launchers(backend: str):
    if backend == "triton":
        from cxrfast.triton import sparse_gather_gemm
        return sparse_gather_gemm
    if backend == "cuda":
        from cxrfast.ops import sparse_gemm_cuda
        return sparse_gemm_cuda
    return _TorchLaunchers


def _with_zero_row(rows: Tensor) -> Tensor:
    """The position rows with the zero row that masked and outside inputs read."""
    return torch.cat([rows, rows.new_zeros(1, rows.shape[1])])


class _GatherGemm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: Tensor, weight: Tensor, bias: Tensor | None, table: Tensor, backend: str) -> Tensor:
        ctx.save_for_backward(rows, weight, table)
        ctx.has_bias, ctx.backend = bias is not None, backend
        return _launchers(backend).forward(_with_zero_row(rows), table, kernel_weight(weight), bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        rows, weight, table = ctx.saved_tensors
        grad_rows, grad_weight = _launchers(ctx.backend).backward(_with_zero_row(rows), table, kernel_weight(weight),
                                                                  grad.contiguous())
        grad_bias = grad.sum(0) if ctx.has_bias else None
        return (grad_rows[:-1].to(rows.dtype), from_tap_major(grad_weight.t(), weight).to(weight.dtype), grad_bias,
                None, None)


def sparse_conv2d_gemm(tiles: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None, stride: int,
                       padding: int, dilation: int, out_layout: TileLayout | None = None) -> Tensor:
    """(N, C_in, t, t) -> (N, C_out, t / stride, t / stride), ungrouped convolutions; with
    `out_layout`, (N_out, C_out, 1, 1) at its cells."""
    backend = OP.select(tiles.device, tiles.dtype)
    if backend == "reference":
        return zero_filled_conv2d(tiles, layout, weight, bias, stride, padding, dilation, 1, out_layout)
    n, channels, tile, _ = tiles.shape
    out_tile = tile // stride if out_layout is None else 1
    out_count = n if out_layout is None else out_layout.count
    table = neighbours(layout, tile, weight.shape[-1], stride, padding, dilation, out_layout)
    rows = tiles.permute(0, 2, 3, 1).reshape(n * tile * tile, channels)
    out = _GatherGemm.apply(rows, weight, bias, table, backend)
    return out.view(out_count, out_tile, out_tile, -1).permute(0, 3, 1, 2)
