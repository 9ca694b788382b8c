"""SwAV's Sinkhorn–Knopp passes and swapped prediction (cxrfast.ops.sinkhorn) over the scores
themselves, in Triton.

The codes q_nk = e_nk · rows_k · columns_n, e_nk = exp(max((s_nk − shift_k − sample_shift_n) / ε,
EXP_FLOOR)), are never stored: every kernel reads the scores (float32, float16 or bfloat16, summed
in float32) and recomputes the exponentials it needs. A sum over many samples or prototypes is
split into chunks, one program each, and torch adds up their partial results (the same order every
run, no atomics); only the gradient kernel writes a crops × batch × prototypes array.

Launch functions only, on (N, K) or (V, B, K) scores; the Sinkhorn loop, its sums over ranks and
the autograd live in cxrfast.ops.sinkhorn.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cxrfast.ops.similarity import EXP_FLOOR

BLOCK_N, BLOCK_K = 32, 128  # a Sinkhorn tile: samples × prototypes
BLOCK_ROWS = 8  # (crop, sample) rows per log-sum-exp program
# A reduction is split into at most MAX_CHUNKS programs of at least MIN_CHUNK entries each: enough
# programs for a GPU when one side is short (B = 256 samples against 65,536 prototypes), few
# partial results.
MAX_CHUNKS, MIN_CHUNK = 32, 512
FLOOR = tl.constexpr(EXP_FLOOR)


@triton.jit
def _exp(shifted, sample_shift, inv_epsilon, inside):
    # e where `inside`, else 0; the exponent is 0 there, as a padding entry's could overflow.
    exponent = tl.where(inside, (shifted - sample_shift) * inv_epsilon, 0.0)
    return tl.where(inside, tl.exp(tl.maximum(exponent, FLOOR)), 0.0)


@triton.jit
def _shifted(s, shift, offs_n, offs_k, N, K):
    # s_nk − shift_k in float32 over a tile and where it lies inside (N, K); 0 outside.
    inside = (offs_n[:, None] < N) & (offs_k[None, :] < K)
    x = tl.load(s + offs_n[:, None].to(tl.int64) * K + offs_k[None, :], mask=inside, other=0.0).to(tl.float32)
    return x - tl.load(shift + offs_k, mask=offs_k < K, other=0.0)[None, :], inside


@triton.jit
def _exponentials(s, shift, sample_shift, offs_n, offs_k, N, K, inv_epsilon):
    # e_nk over a tile, 0 outside.
    x, inside = _shifted(s, shift, offs_n, offs_k, N, K)
    own = tl.load(sample_shift + offs_n, mask=offs_n < N, other=0.0)
    return _exp(x, own[:, None], inv_epsilon, inside)


@triton.jit
def _codes(code_scores, shift, sample_shift, rows, column, offs_k, K, inv_epsilon):
    # One sample's codes q_k over a block of prototypes (0 past K), from its scores and scales.
    inside = offs_k < K
    x = tl.load(code_scores + offs_k, mask=inside, other=0.0).to(tl.float32)
    e = _exp(x - tl.load(shift + offs_k, mask=inside, other=0.0), sample_shift, inv_epsilon, inside)
    return e * tl.load(rows + offs_k, mask=inside, other=0.0) * column


@triton.jit
def _sample_shift(s, shift, partial, N, K, chunk, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # partial[j, n] = max of s_nk − shift_k over chunk j of the prototypes; maxima are kept per tile
    # entry and reduced once at the end.
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    start = tl.program_id(1) * chunk
    top = tl.full((BLOCK_N, BLOCK_K), float("-inf"), tl.float32)
    for k0 in range(start, tl.minimum(start + chunk, K), BLOCK_K):
        x, inside = _shifted(s, shift, offs_n, k0 + tl.arange(0, BLOCK_K), N, K)
        top = tl.maximum(top, tl.where(inside, x, float("-inf")))
    tl.store(partial + tl.program_id(1) * N + offs_n, tl.max(top, 1), mask=offs_n < N)


@triton.jit
def _sample_totals(s, shift, sample_shift, rows, partial, N, K, inv_epsilon, chunk, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    # partial[j, n] = Σ_k e_nk rows_k over chunk j of the prototypes.
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    start = tl.program_id(1) * chunk
    total = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
    for k0 in range(start, tl.minimum(start + chunk, K), BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        e = _exponentials(s, shift, sample_shift, offs_n, offs_k, N, K, inv_epsilon)
        total += e * tl.load(rows + offs_k, mask=offs_k < K, other=0.0)[None, :]
    tl.store(partial + tl.program_id(1) * N + offs_n, tl.sum(total, 1), mask=offs_n < N)


@triton.jit
def _prototype_totals(s, shift, sample_shift, columns, partial, N, K, inv_epsilon, chunk, BLOCK_N: tl.constexpr,
                      BLOCK_K: tl.constexpr):
    # partial[j, k] = Σ_n e_nk columns_n over chunk j of the samples.
    offs_k = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    start = tl.program_id(1) * chunk
    total = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
    for n0 in range(start, tl.minimum(start + chunk, N), BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        e = _exponentials(s, shift, sample_shift, offs_n, offs_k, N, K, inv_epsilon)
        total += e * tl.load(columns + offs_n, mask=offs_n < N, other=0.0)[:, None]
    tl.store(partial + tl.program_id(1) * K + offs_k, tl.sum(total, 0), mask=offs_k < K)


@triton.jit
def _log_sum_exps(s, lse, R, K, inv_temperature, BLOCK_ROWS: tl.constexpr, BLOCK_K: tl.constexpr):
    # lse_r = log Σ_k exp(s_rk / τ) over rows r = (crop, sample), online per tile entry: a running
    # maximum and the sum of exp below it, merged across the entries at the end.
    offs_r = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    top = tl.full((BLOCK_ROWS, BLOCK_K), float("-inf"), tl.float32)
    total = tl.zeros((BLOCK_ROWS, BLOCK_K), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(s + offs_r[:, None].to(tl.int64) * K + offs_k[None, :],
                    mask=(offs_r[:, None] < R) & (offs_k[None, :] < K), other=0.0).to(tl.float32) * inv_temperature
        x = tl.where(offs_k[None, :] < K, x, float("-inf"))
        new = tl.maximum(top, x)
        base = tl.where(new == float("-inf"), 0.0, new)  # an entry past K in every tile so far: no inf − inf
        total = total * tl.exp(top - base) + tl.exp(x - base)
        top = new
    row_top = tl.max(top, 1)
    total = tl.sum(total * tl.exp(top - row_top[:, None]), 1)
    tl.store(lse + offs_r, row_top + tl.log(total), mask=offs_r < R)


@triton.jit
def _code_dots(s, crop, shift, sample_shift, rows, columns, dots, V, B, K, inv_epsilon, BLOCK_V: tl.constexpr,
               BLOCK_K: tl.constexpr):
    # dots[v, b] = Σ_k s_vbk q_bk for the codes q of crop `crop`, one program per sample b: each
    # [V, BLOCK_K] tile of its scores meets the codes recomputed from the code crop's row of it.
    b = tl.program_id(0).to(tl.int64)
    offs_v = tl.arange(0, BLOCK_V)
    starts = (offs_v.to(tl.int64) * B + b) * K
    code_scores = s + (crop * B + b) * K
    own, column = tl.load(sample_shift + b), tl.load(columns + b)
    total = tl.zeros((BLOCK_V, BLOCK_K), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        q = _codes(code_scores, shift, own, rows, column, offs_k, K, inv_epsilon)
        x = tl.load(s + starts[:, None] + offs_k[None, :], mask=(offs_v[:, None] < V) & (offs_k[None, :] < K),
                    other=0.0).to(tl.float32)
        total += x * q[None, :]
    tl.store(dots + offs_v * B + b, tl.sum(total, 1), mask=offs_v < V)


@triton.jit
def _gradient(s, lse, weights, counts, assign, shifts, sample_shifts, rows, columns, grad, V, B, K, A,
              inv_temperature, inv_epsilon, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr):
    # grad_vbk = w_b (count_v softmax(s_vb / τ)_k − Σ_{a: assign_a ≠ v} q_abk) over a [V, BLOCK_K]
    # tile of sample b, each code crop's q recomputed once for the whole tile.
    b = tl.program_id(0).to(tl.int64)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_v = tl.arange(0, BLOCK_V)
    inside = (offs_v[:, None] < V) & (offs_k[None, :] < K)
    at = (offs_v[:, None].to(tl.int64) * B + b) * K + offs_k[None, :]
    x = tl.load(s + at, mask=inside, other=0.0).to(tl.float32)
    row_lse = tl.load(lse + offs_v * B + b, mask=offs_v < V, other=0.0)
    softmax = tl.exp(tl.where(inside, x * inv_temperature - row_lse[:, None], float("-inf")))
    g = tl.load(counts + offs_v, mask=offs_v < V, other=0.0)[:, None] * softmax
    for a in range(A):
        i = tl.load(assign + a)
        q = _codes(s + (i * B + b) * K, shifts + a * K, tl.load(sample_shifts + a * B + b), rows + a * K,
                   tl.load(columns + a * B + b), offs_k, K, inv_epsilon)
        g -= tl.where(offs_v[:, None] == i, 0.0, q[None, :])
    tl.store(grad + at, g * tl.load(weights + b), mask=inside)


def _scores(s: torch.Tensor, ndim: int) -> torch.Tensor:
    if s.ndim != ndim or s.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"scores must be {ndim}-D float32, float16 or bfloat16, not {tuple(s.shape)} {s.dtype}")
    return s.contiguous()


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).contiguous()


def _chunks(length: int, block: int) -> tuple[int, int]:
    """(entries per chunk, chunks) for a reduction over `length`, chunks of whole blocks."""
    chunk = triton.cdiv(max(MIN_CHUNK, triton.cdiv(length, MAX_CHUNKS)), block) * block
    return chunk, triton.cdiv(length, chunk)


def sample_shift(scores: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(N,) float32: each sample's largest s_nk − shift_k."""
    scores = _scores(scores, 2)
    n, k = scores.shape
    chunk, chunks = _chunks(k, BLOCK_K)
    partial = torch.empty(chunks, n, dtype=torch.float32, device=scores.device)
    _sample_shift[(triton.cdiv(n, BLOCK_N), chunks)](scores, _f32(shift), partial, n, k, chunk, BLOCK_N=BLOCK_N,
                                                     BLOCK_K=BLOCK_K)
    return partial.amax(0)


def sample_totals(scores: torch.Tensor, shift: torch.Tensor, sample_shift: torch.Tensor, rows: torch.Tensor,
                  epsilon: float) -> torch.Tensor:
    """(N,) float32: Σ_k e_nk rows_k."""
    scores = _scores(scores, 2)
    n, k = scores.shape
    chunk, chunks = _chunks(k, BLOCK_K)
    partial = torch.empty(chunks, n, dtype=torch.float32, device=scores.device)
    _sample_totals[(triton.cdiv(n, BLOCK_N), chunks)](scores, _f32(shift), _f32(sample_shift), _f32(rows), partial, n,
                                                      k, 1 / epsilon, chunk, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
    return partial.sum(0)


def prototype_totals(scores: torch.Tensor, shift: torch.Tensor, sample_shift: torch.Tensor, columns: torch.Tensor,
                     epsilon: float) -> torch.Tensor:
    """(K,) float32: Σ_n e_nk columns_n."""
    scores = _scores(scores, 2)
    n, k = scores.shape
    chunk, chunks = _chunks(n, BLOCK_N)
    partial = torch.empty(chunks, k, dtype=torch.float32, device=scores.device)
    _prototype_totals[(triton.cdiv(k, BLOCK_K), chunks)](scores, _f32(shift), _f32(sample_shift), _f32(columns),
                                                         partial, n, k, 1 / epsilon, chunk, BLOCK_N=BLOCK_N,
                                                         BLOCK_K=BLOCK_K)
    return partial.sum(0)


def log_sum_exps(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """(V, B) float32: logsumexp_k s_vbk / τ of (V, B, K) scores."""
    scores = _scores(scores, 3)
    crops, batch, k = scores.shape
    lse = torch.empty(crops, batch, dtype=torch.float32, device=scores.device)
    _log_sum_exps[(triton.cdiv(crops * batch, BLOCK_ROWS),)](scores, lse, crops * batch, k, 1 / temperature,
                                                            BLOCK_ROWS=BLOCK_ROWS, BLOCK_K=BLOCK_K)
    return lse


def code_dots(scores: torch.Tensor, crop: int, shift: torch.Tensor, sample_shift: torch.Tensor, rows: torch.Tensor,
              columns: torch.Tensor, epsilon: float) -> torch.Tensor:
    """(V, B) float32: Σ_k s_vbk q_bk, q the codes of crop `crop` (sample_shift and columns (B,),
    the batch's)."""
    scores = _scores(scores, 3)
    crops, batch, k = scores.shape
    dots = torch.empty(crops, batch, dtype=torch.float32, device=scores.device)
    _code_dots[(batch,)](scores, crop, _f32(shift), _f32(sample_shift), _f32(rows), _f32(columns), dots, crops,
                         batch, k, 1 / epsilon, BLOCK_V=triton.next_power_of_2(crops), BLOCK_K=BLOCK_K)
    return dots


def gradient(scores: torch.Tensor, lse: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor,
             assign: tuple[int, ...], shifts: torch.Tensor, sample_shifts: torch.Tensor, rows: torch.Tensor,
             columns: torch.Tensor, temperature: float, epsilon: float) -> torch.Tensor:
    """(V, B, K) in the scores' dtype: w_b (count_v softmax(s_vb / τ) − Σ_{a: assign_a ≠ v} q_ab),
    with the code crops' scales stacked: shifts and rows (A, K), sample_shifts and columns (A, B)."""
    scores = _scores(scores, 3)
    crops, batch, k = scores.shape
    grad = torch.empty_like(scores)
    crops_of = torch.tensor(assign, dtype=torch.int64, device=scores.device)
    _gradient[(batch, triton.cdiv(k, BLOCK_K))](scores, _f32(lse), _f32(weights), _f32(counts), crops_of,
                                                _f32(shifts), _f32(sample_shifts), _f32(rows), _f32(columns), grad,
                                                crops, batch, k, len(assign), 1 / temperature, 1 / epsilon,
                                                BLOCK_V=triton.next_power_of_2(crops), BLOCK_K=BLOCK_K)
    return grad
