"""Sparse convolution as an implicit GEMM over visible positions (SparK), in Triton.

Each output position's input row for tap k is `table[m, k]` in the position rows (with one zero
row at the end for masked or outside inputs): out = sum_k rows[table[:, k]] @ W_k, the gathered
operand never materialised. Backward: grad_W_k = rows[table[:, k]]^T @ grad_out, and grad_out @
W_k^T is scattered back to the input rows with atomic adds.

Launch functions only, on laid-out tensors; the autograd lives in cxrfast.ops.sparse_gemm.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_M, BLOCK_N, BLOCK_C = 32, 32, 32


@triton.jit
def _forward(rows, table, weight, out, M, C, N, K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_C: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K):
        src = tl.load(table + offs_m * K + k, mask=offs_m < M, other=0)
        for c0 in range(0, C, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            a = tl.load(rows + src[:, None] * C + offs_c[None, :], mask=(offs_m[:, None] < M) & (offs_c[None, :] < C),
                        other=0.0)
            b = tl.load(weight + (k * C + offs_c[:, None]) * N + offs_n[None, :],
                        mask=(offs_c[:, None] < C) & (offs_n[None, :] < N), other=0.0)
            acc += tl.dot(a, b)
    tl.store(out + offs_m[:, None] * N + offs_n[None, :], acc.to(out.dtype.element_ty),
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def _grad_weight(rows, table, grad_out, grad_weight, M, C, N, K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_C: tl.constexpr):
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    k = tl.program_id(2)
    acc = tl.zeros((BLOCK_C, BLOCK_N), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        src = tl.load(table + offs_m * K + k, mask=offs_m < M, other=0)
        a = tl.load(rows + src[None, :] * C + offs_c[:, None], mask=(offs_c[:, None] < C) & (offs_m[None, :] < M),
                    other=0.0)
        g = tl.load(grad_out + offs_m[:, None] * N + offs_n[None, :], mask=(offs_m[:, None] < M) & (offs_n[None, :] < N),
                    other=0.0)
        acc += tl.dot(a, g)
    tl.store(grad_weight + (k * C + offs_c[:, None]) * N + offs_n[None, :], acc,
             mask=(offs_c[:, None] < C) & (offs_n[None, :] < N))


@triton.jit
def _grad_rows(grad_out, table, weight, grad_rows, M, C, N, K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               BLOCK_C: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    k = tl.program_id(2)
    acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        g = tl.load(grad_out + offs_m[:, None] * N + offs_n[None, :], mask=(offs_m[:, None] < M) & (offs_n[None, :] < N),
                    other=0.0)
        w = tl.load(weight + (k * C + offs_c[None, :]) * N + offs_n[:, None],
                    mask=(offs_c[None, :] < C) & (offs_n[:, None] < N), other=0.0)
        acc += tl.dot(g, w)
    dst = tl.load(table + offs_m * K + k, mask=offs_m < M, other=0)
    tl.atomic_add(grad_rows + dst[:, None] * C + offs_c[None, :], acc,
                  mask=(offs_m[:, None] < M) & (offs_c[None, :] < C))


def forward(rows: torch.Tensor, table: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """rows (M_in + 1, C), the last row zero; table (M_out, K) int64; weight (K * C, N) tap-major
    -> (M_out, N) (+ bias) in rows' dtype, summed in float32."""
    (m_out, taps), channels, n = table.shape, rows.shape[1], weight.shape[1]
    out = torch.empty(m_out, n, dtype=torch.float32, device=rows.device)
    grid = (triton.cdiv(m_out, BLOCK_M), triton.cdiv(n, BLOCK_N))
    _forward[grid](rows.contiguous(), table.contiguous(), weight.to(rows.dtype).contiguous(), out, m_out, channels,
                   n, taps, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C)
    out = out.to(rows.dtype)
    return out + bias if bias is not None else out


def backward(rows: torch.Tensor, table: torch.Tensor, weight: torch.Tensor,
             grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `forward` for rows (M_in + 1, C) and weight (K * C, N), both float32."""
    (m_out, taps), channels, n = table.shape, rows.shape[1], weight.shape[1]
    rows, table, grad_out = rows.contiguous(), table.contiguous(), grad_out.contiguous()
    grad_weight = torch.empty(taps * channels, n, dtype=torch.float32, device=rows.device)
    _grad_weight[(triton.cdiv(channels, BLOCK_C), triton.cdiv(n, BLOCK_N), taps)](
        rows, table, grad_out, grad_weight, m_out, channels, n, taps, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
        BLOCK_C=BLOCK_C)
    grad_rows = torch.zeros(rows.shape, dtype=torch.float32, device=rows.device)
    _grad_rows[(triton.cdiv(m_out, BLOCK_M), triton.cdiv(channels, BLOCK_C), taps)](
        grad_out, table, weight.to(grad_out.dtype).contiguous(), grad_rows, m_out, channels, n, taps,
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C)
    return grad_rows, grad_weight
