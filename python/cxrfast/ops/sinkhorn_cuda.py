"""SwAV's Sinkhorn passes and swapped prediction (kernels/cuda/sinkhorn.cu) on torch tensors, with
the functions and results of kernels/triton/sinkhorn.py (cxrfast.triton.sinkhorn).

Scores stay in their dtype (float32, float16 or bfloat16; read as float32): a float32 copy would
be the N × K array the kernels avoid. Every other input is made float32 and contiguous, every
result is float32 but the gradient, which comes in the scores' dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# A Sinkhorn pass splits the axis it sums over into at most MAX_CHUNKS blocks of the grid, of at
# least MIN_CHUNK entries each; torch adds up their partial results.
MAX_CHUNKS, MIN_CHUNK = 32, 512


def _scores(s: Tensor, ndim: int) -> tuple[Tensor, int]:
    if s.ndim != ndim or s.dtype not in DTYPES or s.device.type != "cuda":
        raise ValueError(f"scores must be {ndim}-D float32, float16 or bfloat16 on a CUDA device, not "
                         f"{tuple(s.shape)} {s.dtype} on {s.device}")
    return s.contiguous(), DTYPES[s.dtype]


def _f32(x: Tensor, device: torch.device) -> Tensor:
    return x.to(device=device, dtype=torch.float32).contiguous()


def _chunks(length: int) -> int:
    return max(1, min(MAX_CHUNKS, length // MIN_CHUNK))


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def sample_shift(scores: Tensor, shift: Tensor) -> Tensor:
    """(N,): each sample's largest s_nk − shift_k."""
    from cxrfast import _cuda

    (s, dtype), device = _scores(scores, 2), scores.device
    n, k = s.shape
    partial = torch.empty(_chunks(k), n, dtype=torch.float32, device=device)
    with torch.cuda.device(device):
        _cuda.sinkhorn_sample_shift(s.data_ptr(), dtype, _f32(shift, device).data_ptr(), partial.data_ptr(), n, k,
                                    partial.shape[0], _stream(device))
    return partial.amax(0)


def sample_totals(scores: Tensor, shift: Tensor, sample_shift: Tensor, rows: Tensor, epsilon: float) -> Tensor:
    """(N,): Σ_k e_nk rows_k."""
    from cxrfast import _cuda

    (s, dtype), device = _scores(scores, 2), scores.device
    n, k = s.shape
    partial = torch.empty(_chunks(k), n, dtype=torch.float32, device=device)
    vectors = [_f32(x, device) for x in (shift, sample_shift, rows)]
    with torch.cuda.device(device):
        _cuda.sinkhorn_sample_totals(s.data_ptr(), dtype, *(x.data_ptr() for x in vectors), 1 / epsilon,
                                     partial.data_ptr(), n, k, partial.shape[0], _stream(device))
    return partial.sum(0)


def prototype_totals(scores: Tensor, shift: Tensor, sample_shift: Tensor, columns: Tensor, epsilon: float) -> Tensor:
    """(K,): Σ_n e_nk columns_n."""
    from cxrfast import _cuda

    (s, dtype), device = _scores(scores, 2), scores.device
    n, k = s.shape
    partial = torch.empty(_chunks(n), k, dtype=torch.float32, device=device)
    vectors = [_f32(x, device) for x in (shift, sample_shift, columns)]
    with torch.cuda.device(device):
        _cuda.sinkhorn_prototype_totals(s.data_ptr(), dtype, *(x.data_ptr() for x in vectors), 1 / epsilon,
                                        partial.data_ptr(), n, k, partial.shape[0], _stream(device))
    return partial.sum(0)


def log_sum_exps(scores: Tensor, temperature: float) -> Tensor:
    """(V, B): logsumexp_k s_vbk / τ of (V, B, K) scores."""
    from cxrfast import _cuda

    (s, dtype), device = _scores(scores, 3), scores.device
    crops, batch, k = s.shape
    lse = torch.empty(crops, batch, dtype=torch.float32, device=device)
    with torch.cuda.device(device):
        _cuda.swapped_log_sum_exps(s.data_ptr(), dtype, lse.data_ptr(), crops, batch, k, 1 / temperature,
                                   _stream(device))
    return lse


def code_dots(scores: Tensor, crop: int, shift: Tensor, sample_shift: Tensor, rows: Tensor, columns: Tensor,
              epsilon: float) -> Tensor:
    """(V, B): Σ_k s_vbk q_bk, q the codes of crop `crop` (sample_shift and columns (B,), the batch's)."""
    from cxrfast import _cuda

    (s, dtype), device = _scores(scores, 3), scores.device
    crops, batch, k = s.shape
    dots = torch.empty(crops, batch, dtype=torch.float32, device=device)
    vectors = [_f32(x, device) for x in (shift, sample_shift, rows, columns)]
    with torch.cuda.device(device):
        _cuda.swapped_code_dots(s.data_ptr(), dtype, crop, *(x.data_ptr() for x in vectors), 1 / epsilon,
                                dots.data_ptr(), crops, batch, k, _stream(device))
    return dots


def gradient(scores: Tensor, lse: Tensor, weights: Tensor, counts: Tensor, assign: tuple[int, ...], shifts: Tensor,
             sample_shifts: Tensor, rows: Tensor, columns: Tensor, temperature: float, epsilon: float) -> Tensor:
    """(V, B, K) in the scores' dtype: w_b (count_v softmax(s_vb / τ) − Σ_{a: assign_a ≠ v} q_ab),
    with the code crops' scales stacked: shifts and rows (A, K), sample_shifts and columns (A, B)."""
    from cxrfast import _cuda

    (s, dtype), device = _scores(scores, 3), scores.device
    crops, batch, k = s.shape
    grad = torch.empty_like(s)
    crops_of = torch.tensor(assign, dtype=torch.int64, device=device)
    vectors = [_f32(x, device) for x in (lse, weights, counts)]
    scales = [_f32(x, device) for x in (shifts, sample_shifts, rows, columns)]
    with torch.cuda.device(device):
        _cuda.swapped_gradient(s.data_ptr(), dtype, *(x.data_ptr() for x in vectors), crops_of.data_ptr(),
                               *(x.data_ptr() for x in scales), grad.data_ptr(), crops, batch, k, len(assign),
                               1 / temperature, 1 / epsilon, _stream(device))
    return grad
