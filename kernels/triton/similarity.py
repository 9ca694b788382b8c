"""Row reductions of a similarity matrix for contrastive losses (SimCLR, CLIP, SigLIP), in Triton.

Logits s_ij = scale * <a_i, b_j> + bias, with entry (i, i + offset) left out when an offset is
given. The N x M logit matrix is never stored: each program owns a block of rows (or columns) and
walks the other side tile by tile, flash-attention style, computing each tile's logits with tl.dot
over chunks of D. Forward keeps an online log-sum-exp (mode "lse") or a running sum of softplus
(mode "softplus"); the backward kernels recompute the tiles and contract their weights
w_ij = g_i * phi(s_ij) (+ h_j * exp(s_ij - col_stat_j)) with the other side's embeddings.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_ROWS, BLOCK_COLS = 64, 64  # forward tile
BLOCK_OWN, BLOCK_OTHER = 32, 64  # backward tile: the program's own block, and the side it walks
BLOCK_D = 32  # chunk of D per tl.dot for the logits
MAX_BLOCK_G = 128  # widest slice of D one backward program accumulates (bounds its registers)


@triton.jit
def _dots(x, y, offs_x, offs_y, NX, NY, D, UPCAST: tl.constexpr, PRECISION: tl.constexpr, BLOCK_X: tl.constexpr,
          BLOCK_Y: tl.constexpr, BLOCK_D: tl.constexpr):
    acc = tl.zeros((BLOCK_X, BLOCK_Y), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        xt = tl.load(x + offs_x[:, None] * D + offs_d[None, :], mask=(offs_x[:, None] < NX) & (offs_d[None, :] < D),
                     other=0.0)
        yt = tl.load(y + offs_y[None, :] * D + offs_d[:, None], mask=(offs_y[None, :] < NY) & (offs_d[:, None] < D),
                     other=0.0)
        if UPCAST:
            xt, yt = xt.to(tl.float32), yt.to(tl.float32)
        acc = tl.dot(xt, yt, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _kept(rows, cols, M, offset, HAS_OFFSET: tl.constexpr):
    kept = cols < M
    if HAS_OFFSET:
        kept = kept & (cols != rows + offset)
    return kept


@triton.jit
def _log1p(t):
    # log(u) * t / (u - 1) cancels the rounding of u = 1 + t, so tiny t keep their precision.
    u = 1.0 + t
    exact = u == 1.0
    return tl.where(exact, t, tl.log(u) * (t / tl.where(exact, 1.0, u - 1.0)))


@triton.jit
def _weights(s, rows, cols, N, M, offset, row_stat, g, col_stat, h, HAS_OFFSET: tl.constexpr, LSE: tl.constexpr,
             HAS_COL: tl.constexpr):
    # rows / cols are broadcastable 2D indices, so the same code serves tiles in either orientation.
    if LSE:
        phi = tl.exp(s - tl.load(row_stat + rows, mask=rows < N, other=0.0))
    else:
        phi = tl.sigmoid(s)
    w = tl.load(g + rows, mask=rows < N, other=0.0) * phi
    if HAS_COL:
        col_lse = tl.load(col_stat + cols, mask=cols < M, other=0.0)
        w += tl.load(h + cols, mask=cols < M, other=0.0) * tl.exp(s - col_lse)
    # Padding rows too: their logit is the bias, and exp(bias - col_stat) can overflow where every real logit of
    # the column sits far below it; inf * 0 in the dot with their zero-loaded embeddings would give NaN.
    return tl.where((rows < N) & _kept(rows, cols, M, offset, HAS_OFFSET), w, 0.0)


@triton.jit
def _forward(a, b, out, N, M, D, scale, bias, offset, HAS_OFFSET: tl.constexpr, LSE: tl.constexpr,
             UPCAST: tl.constexpr, PRECISION: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
             BLOCK_D: tl.constexpr):
    offs_n = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    m_i = tl.full((BLOCK_ROWS,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_ROWS,), dtype=tl.float32)  # lse: sum of exp(s - m_i); softplus: the running sum
    for m0 in range(0, M, BLOCK_COLS):
        offs_m = m0 + tl.arange(0, BLOCK_COLS)
        s = scale * _dots(a, b, offs_n, offs_m, N, M, D, UPCAST, PRECISION, BLOCK_ROWS, BLOCK_COLS, BLOCK_D) + bias
        kept = _kept(offs_n[:, None], offs_m[None, :], M, offset, HAS_OFFSET)
        if LSE:
            s = tl.where(kept, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row with nothing kept yet keeps m = -inf; shifting by 0 then avoids inf - inf.
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            l_i = l_i * tl.exp(m_i - shift) + tl.sum(tl.exp(s - shift[:, None]), 1)
            m_i = m_new
        else:
            l_i += tl.sum(tl.where(kept, tl.maximum(s, 0.0) + _log1p(tl.exp(-tl.abs(s))), 0.0), 1)
    if LSE:
        l_i = m_i + tl.log(tl.where(m_i == float("-inf"), 1.0, l_i))  # a row with nothing kept is -inf, not log(0)
    tl.store(out + offs_n, l_i, mask=offs_n < N)


@triton.jit
def _backward(x, y, row_stat, g, col_stat, h, grad, wdot, wsum, NX, NY, D, scale, bias, offset,
              ROWS_OWN: tl.constexpr, HAS_OFFSET: tl.constexpr, LSE: tl.constexpr, HAS_COL: tl.constexpr,
              UPCAST: tl.constexpr, PRECISION: tl.constexpr, BLOCK_X: tl.constexpr, BLOCK_Y: tl.constexpr,
              BLOCK_D: tl.constexpr, BLOCK_G: tl.constexpr):
    # Program (i, k) owns BLOCK_X entries of x and the k-th BLOCK_G slice of D of their gradient; it walks
    # all of y. ROWS_OWN: x = a, y = b (grad_a, plus wdot and wsum); else x = b, y = a and tiles are w^T.
    offs_x = tl.program_id(0) * BLOCK_X + tl.arange(0, BLOCK_X)
    offs_g = tl.program_id(1) * BLOCK_G + tl.arange(0, BLOCK_G)
    acc = tl.zeros((BLOCK_X, BLOCK_G), dtype=tl.float32)
    wdot_acc = tl.zeros((BLOCK_X,), dtype=tl.float32)
    wsum_acc = tl.zeros((BLOCK_X,), dtype=tl.float32)
    for y0 in range(0, NY, BLOCK_Y):
        offs_y = y0 + tl.arange(0, BLOCK_Y)
        dots = _dots(x, y, offs_x, offs_y, NX, NY, D, UPCAST, PRECISION, BLOCK_X, BLOCK_Y, BLOCK_D)
        s = scale * dots + bias
        if ROWS_OWN:
            w = _weights(s, offs_x[:, None], offs_y[None, :], NX, NY, offset, row_stat, g, col_stat, h, HAS_OFFSET,
                         LSE, HAS_COL)
            wdot_acc += tl.sum(w * dots, 1)
            wsum_acc += tl.sum(w, 1)
        else:
            w = _weights(s, offs_y[None, :], offs_x[:, None], NY, NX, offset, row_stat, g, col_stat, h, HAS_OFFSET,
                         LSE, HAS_COL)
        # w stays fp32: for half inputs the slice is upcast and multiplied in tf32 (fp32 range, no overflow).
        yg = tl.load(y + offs_y[:, None] * D + offs_g[None, :], mask=(offs_y[:, None] < NY) & (offs_g[None, :] < D),
                     other=0.0).to(tl.float32)
        acc = tl.dot(w, yg, acc, input_precision=PRECISION)
    tl.store(grad + offs_x[:, None] * D + offs_g[None, :], acc, mask=(offs_x[:, None] < NX) & (offs_g[None, :] < D))
    if ROWS_OWN:
        if tl.program_id(1) == 0:  # every slice of D computes the same sums; the first one stores them
            tl.store(wdot + offs_x, wdot_acc, mask=offs_x < NX)
            tl.store(wsum + offs_x, wsum_acc, mask=offs_x < NX)


def _prepare(a, b, offset, mode):
    if mode not in ("lse", "softplus"):
        raise ValueError(f"mode must be 'lse' or 'softplus', got {mode!r}")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or a.dtype != b.dtype:
        raise ValueError(f"a (N, D) and b (M, D) must share D and dtype, got {tuple(a.shape)} {a.dtype} and "
                         f"{tuple(b.shape)} {b.dtype}")
    if a.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported dtype {a.dtype}")
    # fp32 inputs get exact fp32 products (no tf32); half inputs multiply exactly into fp32 anyway. CPU tensors
    # only run in Triton's interpreter, which keeps bf16 as raw uint16 bits that its tl.dot would multiply.
    flags = dict(HAS_OFFSET=offset is not None, LSE=mode == "lse", UPCAST=a.dtype == torch.bfloat16 and a.is_cpu,
                 PRECISION="ieee" if a.dtype == torch.float32 else "tf32")
    return a.contiguous(), b.contiguous(), 0 if offset is None else int(offset), flags


def _stat(t):
    return None if t is None else t.to(torch.float32).contiguous()


def forward_rows(a: torch.Tensor, b: torch.Tensor, scale: float, bias: float, offset: int | None,
                 mode: str) -> torch.Tensor:
    """(N,) float32: logsumexp_j s_ij ("lse") or sum_j softplus(s_ij) ("softplus") over the kept entries."""
    a, b, offset, flags = _prepare(a, b, offset, mode)
    (n, d), m = a.shape, b.shape[0]
    out = torch.empty(n, dtype=torch.float32, device=a.device)
    _forward[(triton.cdiv(n, BLOCK_ROWS),)](a, b, out, n, m, d, float(scale), float(bias), offset, **flags,
                                            BLOCK_ROWS=BLOCK_ROWS, BLOCK_COLS=BLOCK_COLS, BLOCK_D=BLOCK_D)
    return out


def _backward_launch(x, y, row_stat, g, col_stat, h, wdot, wsum, scale, bias, offset, flags, rows_own):
    nx, d = x.shape
    block_g = max(16, min(triton.next_power_of_2(d), MAX_BLOCK_G))
    grad = torch.empty(nx, d, dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(nx, BLOCK_OWN), triton.cdiv(d, block_g))
    _backward[grid](x, y, _stat(row_stat), _stat(g), _stat(col_stat), _stat(h), grad, wdot, wsum, nx, y.shape[0], d,
                    float(scale), float(bias), offset, ROWS_OWN=rows_own, HAS_COL=col_stat is not None, **flags,
                    BLOCK_X=BLOCK_OWN, BLOCK_Y=BLOCK_OTHER, BLOCK_D=BLOCK_D, BLOCK_G=block_g)
    return grad


def backward_a(a: torch.Tensor, b: torch.Tensor, scale: float, bias: float, offset: int | None, mode: str,
               row_stat: torch.Tensor, g: torch.Tensor, col_stat: torch.Tensor | None = None,
               h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grad_i = sum_j w_ij b_j (N, D), wdot_i = sum_j w_ij <a_i, b_j> (N,), wsum_i = sum_j w_ij (N,), all float32.

    w_ij = g_i * phi(s_ij) + h_j * exp(s_ij - col_stat_j), phi = exp(s - row_stat_i) for "lse" and
    sigmoid(s) for "softplus"; the column term only when col_stat and h are given (mode "lse").
    """
    a, b, offset, flags = _prepare(a, b, offset, mode)
    wdot = torch.empty(a.shape[0], dtype=torch.float32, device=a.device)
    wsum = torch.empty_like(wdot)
    grad = _backward_launch(a, b, row_stat, g, col_stat, h, wdot, wsum, scale, bias, offset, flags, True)
    return grad, wdot, wsum


def backward_b(a: torch.Tensor, b: torch.Tensor, scale: float, bias: float, offset: int | None, mode: str,
               row_stat: torch.Tensor, g: torch.Tensor, col_stat: torch.Tensor | None = None,
               h: torch.Tensor | None = None) -> torch.Tensor:
    """grad_b_j = sum_i w_ij a_i (M, D) float32, with w as in backward_a."""
    a, b, offset, flags = _prepare(a, b, offset, mode)
    return _backward_launch(b, a, row_stat, g, col_stat, h, None, None, scale, bias, offset, flags, False)
