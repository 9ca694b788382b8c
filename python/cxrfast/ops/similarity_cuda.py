"""The CUDA similarity row reductions (kernels/cuda/similarity.cu) on torch tensors.

Logits s = scale · a bᵀ + bias, never stored: forward_rows gives each row's log-sum-exp ("lse") or
sum of softplus ("softplus"); backward_a and backward_b give the products of the logit weights
w_ij = g_i · phi_ij + h_j · exp(s_ij − col_stat_j), phi = exp(s − row_stat) ("lse") or sigmoid(s)
("softplus"), with b and a. offset None keeps every entry, else entry (i, i + offset) is left out.
Inputs of any floating dtype are computed in float32; results are float32 on a's device.
"""

from __future__ import annotations

import torch
from torch import Tensor

MODES = {"lse": 0, "softplus": 1}


def _f32(x: Tensor) -> Tensor:
    return x.to(torch.float32).contiguous()


def _check(a: Tensor, b: Tensor, mode: str) -> int:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (N, D) and (M, D), not {tuple(a.shape)} and {tuple(b.shape)}")
    if a.device != b.device or a.device.type != "cuda":
        raise ValueError(f"a and b must be on one CUDA device, not {a.device} and {b.device}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
    return MODES[mode]


def _vector(x: Tensor | None, length: int, name: str, device: torch.device) -> Tensor | None:
    if x is None:
        return None
    if x.shape != (length,):
        raise ValueError(f"{name} must be ({length},), not {tuple(x.shape)}")
    return x.to(device=device, dtype=torch.float32).contiguous()


def _ptr(x: Tensor | None) -> int:
    return 0 if x is None else x.data_ptr()


def forward_rows(a: Tensor, b: Tensor, scale: float, bias: float, offset: int | None, mode: str) -> Tensor:
    """(N,) log-sum-exp or softplus sum over each row of the logits."""
    from cxrfast import _cuda

    code = _check(a, b, mode)
    a32, b32 = _f32(a), _f32(b)
    out = torch.empty(a.shape[0], dtype=torch.float32, device=a.device)
    with torch.cuda.device(a.device):
        _cuda.similarity_forward_rows(a32.data_ptr(), b32.data_ptr(), out.data_ptr(), a.shape[0], b.shape[0],
                                      a.shape[1], float(scale), float(bias), offset is not None, offset or 0, code,
                                      torch.cuda.current_stream(a.device).cuda_stream)
    return out


def _weights(a: Tensor, b: Tensor, mode: str, row_stat: Tensor | None, g: Tensor, col_stat: Tensor | None,
             h: Tensor | None) -> tuple[int, list[Tensor | None]]:
    code = _check(a, b, mode)
    if (col_stat is None) != (h is None):
        raise ValueError("col_stat and h must be given together")
    if row_stat is None and code == 0:
        raise ValueError("row_stat is required in lse mode")
    n, m = a.shape[0], b.shape[0]
    return code, [_vector(row_stat, n, "row_stat", a.device), _vector(g, n, "g", a.device),
                  _vector(col_stat, m, "col_stat", a.device), _vector(h, m, "h", a.device)]


def backward_a(a: Tensor, b: Tensor, scale: float, bias: float, offset: int | None, mode: str,
               row_stat: Tensor | None, g: Tensor, col_stat: Tensor | None = None,
               h: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(W b (N, D), Σ_j w_ij <a_i, b_j> (N,), Σ_j w_ij (N,)); row_stat may be None for softplus."""
    from cxrfast import _cuda

    code, weights = _weights(a, b, mode, row_stat, g, col_stat, h)
    a32, b32 = _f32(a), _f32(b)
    n, d = a.shape
    grad = torch.empty(n, d, dtype=torch.float32, device=a.device)
    wdot = torch.empty(n, dtype=torch.float32, device=a.device)
    wsum = torch.empty(n, dtype=torch.float32, device=a.device)
    with torch.cuda.device(a.device):
        _cuda.similarity_backward_a(a32.data_ptr(), b32.data_ptr(), *map(_ptr, weights), grad.data_ptr(),
                                    wdot.data_ptr(), wsum.data_ptr(), n, b.shape[0], d, float(scale), float(bias),
                                    offset is not None, offset or 0, code,
                                    torch.cuda.current_stream(a.device).cuda_stream)
    return grad, wdot, wsum


def backward_b(a: Tensor, b: Tensor, scale: float, bias: float, offset: int | None, mode: str,
               row_stat: Tensor | None, g: Tensor, col_stat: Tensor | None = None,
               h: Tensor | None = None) -> Tensor:
    """Wᵀ a (M, D) for the same weights as backward_a."""
    from cxrfast import _cuda

    code, weights = _weights(a, b, mode, row_stat, g, col_stat, h)
    a32, b32 = _f32(a), _f32(b)
    m, d = b.shape
    grad_b = torch.empty(m, d, dtype=torch.float32, device=a.device)
    with torch.cuda.device(a.device):
        _cuda.similarity_backward_b(a32.data_ptr(), b32.data_ptr(), *map(_ptr, weights), grad_b.data_ptr(),
                                    a.shape[0], m, d, float(scale), float(bias), offset is not None, offset or 0,
                                    code, torch.cuda.current_stream(a.device).cuda_stream)
    return grad_b
