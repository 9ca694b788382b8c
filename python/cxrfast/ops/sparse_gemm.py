"""Sparse convolution as gather + GEMM over visible positions, for small tiles.

On the deep stages a tile is 1 or 2 positions wide, so a convolution over halo windows feeds
torch's convolution tiny spatial maps, which it runs slowly. Here every output position gathers
its k×k input positions through a neighbour table (masked or outside positions read a zero row)
and one GEMM applies the weight. Backward recomputes the gather instead of keeping it, so the
saved state stays O(visible positions × channels).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cxrfast.ops.dispatch import select_backend
from cxrfast.ops.sparse_tiles import TileLayout

BACKENDS = ("reference", "cpu", "triton", "cuda")


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


def _gather(rows: Tensor, table: Tensor) -> Tensor:
    """(M_in, C), (M_out, K) -> (M_out, K * C), tap-major (as `tap_major` orders the weight): each
    output's k² input rows side by side, so the gather needs no transpose."""
    padded = torch.cat([rows, rows.new_zeros(1, rows.shape[1])])
    return padded[table].view(table.shape[0], -1)


def tap_major(weight: Tensor) -> Tensor:
    """(C_out, C_in, k, k) -> (C_out, k * k * C_in): column k * C_in + c holds tap k of channel c.
    Each row's small transpose stays in cache (a (k², C_out) transpose of the whole weight would not)."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def kernel_weight(weight: Tensor) -> Tensor:
    """(k * k * C_in, C_out), contiguous: the layout the Triton and CUDA kernels read."""
    return tap_major(weight).t().contiguous()


def from_tap_major(grad: Tensor, weight: Tensor) -> Tensor:
    """The inverse of tap_major, for the weight's gradient."""
    out_channels, in_channels, kernel, _ = weight.shape
    return grad.reshape(out_channels, kernel, kernel, in_channels).permute(0, 3, 1, 2)


class _GatherGemm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: Tensor, weight: Tensor, bias: Tensor | None, table: Tensor) -> Tensor:
        ctx.save_for_backward(rows, weight, table)
        ctx.has_bias = bias is not None
        out = torch.mm(_gather(rows, table), tap_major(weight).t())
        return out + bias if bias is not None else out

    @staticmethod
    def backward(ctx, grad: Tensor):
        rows, weight, table = ctx.saved_tensors
        channels = rows.shape[1]
        grad_weight = from_tap_major(torch.mm(grad.t(), _gather(rows, table)), weight)
        grad_columns = torch.mm(grad, tap_major(weight)).view(-1, channels)
        grad_rows = rows.new_zeros(rows.shape[0] + 1, channels)
        grad_rows.index_add_(0, table.reshape(-1), grad_columns)
        grad_bias = grad.sum(0) if ctx.has_bias else None
        return grad_rows[:-1], grad_weight, grad_bias, None


class _GatherGemmCuda(torch.autograd.Function):
    """The same contract as _GatherGemm, with the kernels of kernels/cuda/sparse_gather_gemm.cu."""

    @staticmethod
    def forward(ctx, rows: Tensor, weight: Tensor, bias: Tensor | None, table: Tensor) -> Tensor:
        from cxrfast import _cuda

        m_out, taps = table.shape
        channels, n = rows.shape[1], weight.shape[0]
        padded = torch.cat([rows, rows.new_zeros(1, channels)]).contiguous()
        table = table.contiguous()
        out = rows.new_empty(m_out, n)
        bias_ptr = bias.contiguous().data_ptr() if bias is not None else 0
        _cuda.gather_gemm_forward(padded.data_ptr(), table.data_ptr(), kernel_weight(weight).data_ptr(), bias_ptr,
                                  out.data_ptr(), m_out, channels, n, taps, torch.cuda.current_stream().cuda_stream)
        ctx.save_for_backward(rows, weight, table)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        from cxrfast import _cuda

        rows, weight, table = ctx.saved_tensors
        m_out, taps = table.shape
        channels, n = rows.shape[1], weight.shape[0]
        padded = torch.cat([rows, rows.new_zeros(1, channels)]).contiguous()
        grad = grad.contiguous()
        grad_rows = rows.new_zeros(rows.shape[0] + 1, channels)
        grad_w = rows.new_empty(taps * channels, n)
        _cuda.gather_gemm_backward(padded.data_ptr(), table.data_ptr(), kernel_weight(weight).data_ptr(),
                                   grad.data_ptr(), grad_rows.data_ptr(), grad_w.data_ptr(), m_out, channels, n, taps,
                                   torch.cuda.current_stream().cuda_stream)
        return grad_rows[:-1], from_tap_major(grad_w.t(), weight), grad.sum(0) if ctx.has_bias else None, None


def sparse_conv2d_gemm(tiles: Tensor, layout: TileLayout, weight: Tensor, bias: Tensor | None, stride: int,
                       padding: int, dilation: int, out_layout: TileLayout | None = None) -> Tensor:
    """(N, C_in, t, t) -> (N, C_out, t / stride, t / stride), ungrouped convolutions; with
    `out_layout`, (N_out, C_out, 1, 1) at its cells."""
    n, channels, tile, _ = tiles.shape
    out_tile = tile // stride if out_layout is None else 1
    out_count = n if out_layout is None else out_layout.count
    table = neighbours(layout, tile, weight.shape[-1], stride, padding, dilation, out_layout)
    rows = tiles.permute(0, 2, 3, 1).reshape(n * tile * tile, channels)
    backend = select_backend(tiles.device, BACKENDS)
    if backend == "triton":
        from cxrfast.triton.sparse_gather_gemm import GatherGemm
    elif backend == "cuda" and tiles.dtype == torch.float32:
        GatherGemm = _GatherGemmCuda
    else:  # the torch gather + GEMM serves the CPU and as the reference
        GatherGemm = _GatherGemm
    out = GatherGemm.apply(rows, weight, bias, table)
    return out.view(out_count, out_tile, out_tile, -1).permute(0, 3, 1, 2)
