"""The CUDA gather-GEMM sparse convolution (kernels/cuda/sparse_gather_gemm.cu) on torch tensors:
launch functions on laid-out float32 CUDA tensors, the autograd in cxrfast.ops.sparse_gemm."""

from __future__ import annotations

import torch
from torch import Tensor


def forward(rows: Tensor, table: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """rows (M_in + 1, C), the last row zero; table (M_out, K) int64; weight (K * C, N) tap-major
    -> (M_out, N) (+ bias, added in the kernel)."""
    from cxrfast import _cuda

    (m_out, taps), channels, n = table.shape, rows.shape[1], weight.shape[1]
    rows, table, weight = rows.contiguous(), table.contiguous(), weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    out = rows.new_empty(m_out, n)
    _cuda.gather_gemm_forward(rows.data_ptr(), table.data_ptr(), weight.data_ptr(),
                              0 if bias is None else bias.data_ptr(), out.data_ptr(), m_out, channels, n, taps,
                              torch.cuda.current_stream(rows.device).cuda_stream)
    return out


def backward(rows: Tensor, table: Tensor, weight: Tensor, grad_out: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of `forward` for rows (M_in + 1, C) and weight (K * C, N)."""
    from cxrfast import _cuda

    (m_out, taps), channels, n = table.shape, rows.shape[1], weight.shape[1]
    rows, table, weight, grad_out = rows.contiguous(), table.contiguous(), weight.contiguous(), grad_out.contiguous()
    grad_rows = torch.zeros_like(rows)
    grad_weight = rows.new_empty(taps * channels, n)
    _cuda.gather_gemm_backward(rows.data_ptr(), table.data_ptr(), weight.data_ptr(), grad_out.data_ptr(),
                               grad_rows.data_ptr(), grad_weight.data_ptr(), m_out, channels, n, taps,
                               torch.cuda.current_stream(rows.device).cuda_stream)
    return grad_rows, grad_weight
