"""Row reductions of a similarity matrix scale · a bᵀ + bias, never stored whole.

Contrastive losses are sums over rows of similarity logits: NT-Xent, MoCo and CLIP take each
row's log-sum-exp (CLIP each column's too), SigLIP each row's sum of softplus. The positive terms
are one dot product per row, cheap with plain autograd; the reductions are where the N×M logit
matrix appears. Here they are computed over tiles: only the per-row (and per-column) results are
kept for backward, which recomputes the tiles and turns them into both input gradients, so memory
grows with (N + M)·D, never N·M.

Gradient: with w_ij = ∂loss/∂s_ij (for log-sum-exps g_i·exp(s_ij − row_i) + h_j·exp(s_ij − col_j),
for softplus sums g_i·σ(s_ij)), ∂a = scale · W b, ∂b = scale · Wᵀ a, ∂scale = Σ_i ⟨a_i, (W b)_i⟩
and ∂bias = Σ w.

Backends share that decomposition: `cpu` runs blocks of rows through torch's GEMM on any device
(one pass also merges the column log-sum-exps online); `triton` and `cuda` run fused tile kernels
(columns as the rows of the swapped product).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cxrfast.ops.dispatch import FLOATING, Op, Support

# The tile kernels accumulate in float32, so float64 (gradcheck) runs blocked or as the reference.
_TILED = frozenset({torch.float16, torch.bfloat16, torch.float32})
_SUPPORT = {"reference": Support(FLOATING), "cpu": Support(FLOATING), "triton": Support(_TILED),
            "cuda": Support(_TILED, frozenset({"cuda"}))}
LSE_OP, SOFTPLUS_OP = Op("similarity_lse", _SUPPORT), Op("similarity_softplus", _SUPPORT)
MODES = ("lse", "softplus")
# Rows per CPU block: a block's logits are rows × M float32 values; 2^21 of them (8 MiB) keep the
# GEMM efficient and the scratch far below the N×M matrix at the sizes where it matters.
BLOCK_ELEMENTS = 1 << 21
# Exponents are floored here: below e^-87 float32 results are denormal, which x86 computes tens of
# times slower (a 4k × 4k NT-Xent forward spent 83% of its time there), and such terms weigh
# under 1e-38 against the row maximum's 1.
EXP_FLOOR = -87.0


def accumulation(x: Tensor) -> Tensor:
    """float32 for half and single precision inputs; float64 stays float64 (gradcheck)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _rows_per_block(columns: int) -> int:
    return max(16, BLOCK_ELEMENTS // max(columns, 1))


def _block_logits(a: Tensor, b: Tensor, scale: Tensor, bias: Tensor, start: int, offset: int | None) -> Tensor:
    """scale · a bᵀ + bias for the block of rows from `start`, entry (i, i + offset) at -inf (left
    out) unless `offset` is None."""
    logits = (a @ b.t()).mul_(scale).add_(bias)
    if offset is not None:
        rows = torch.arange(logits.shape[0], device=logits.device)
        columns = rows + start + offset
        inside = (columns >= 0) & (columns < logits.shape[1])
        logits[rows[inside], columns[inside]] = float("-inf")
    return logits


def _exp_(x: Tensor) -> Tensor:
    """exp in place, exponents floored at EXP_FLOOR."""
    return x.clamp_(min=EXP_FLOOR).exp_()


def _reduce_rows_(logits: Tensor, mode: str) -> Tensor:
    """Each row's log-sum-exp or softplus sum; overwrites `logits`."""
    if mode == "softplus":
        return F.softplus(logits.clamp_(min=EXP_FLOOR)).sum(1)
    top = logits.amax(1, keepdim=True)
    return _exp_(logits.sub_(top)).sum(1).log_().add_(top[:, 0])


class _Blocked:
    """The `cpu` backend: blocks of rows through torch's GEMM, on float32 (or float64) inputs."""

    @staticmethod
    def forward(a, b, scale, bias, offset, mode, columns):
        a, b, scale, bias = (accumulation(x) for x in (a, b, scale, bias))
        n, m = a.shape[0], b.shape[0]
        rows = a.new_empty(n)
        col_max, col_sum = a.new_full((m,), float("-inf")), a.new_zeros(m)
        step = _rows_per_block(m)
        for start in range(0, n, step):
            logits = _block_logits(a[start:start + step], b, scale, bias, start, offset)
            if columns:  # online merge: rescale the running sums to the new column maximum
                new_max = torch.maximum(col_max, logits.max(0).values)
                safe = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
                col_sum.mul_(torch.exp(col_max - safe)).add_(_exp_(logits - safe).sum(0))
                col_max = new_max
            rows[start:start + step] = _reduce_rows_(logits, mode)
        return rows, col_max + torch.log(col_sum) if columns else a.new_empty(0)

    @staticmethod
    def backward(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h, want_bias):
        """(W b, Wᵀ a, Σ w ∘ a bᵀ, Σ w) with W the logits' gradient."""
        a, b, scale, bias = (accumulation(x) for x in (a, b, scale, bias))
        grad_a, grad_b, weight_sum = torch.zeros_like(a), torch.zeros_like(b), a.new_zeros(())
        step = _rows_per_block(b.shape[0])
        for start in range(0, a.shape[0], step):
            block = a[start:start + step]
            logits = _block_logits(block, b, scale, bias, start, offset)
            # In place where possible: each pass over a block is memory traffic.
            column_weights = _exp_(logits - col_stat[None, :]).mul_(h[None, :]) if col_stat is not None else None
            if mode == "lse":
                weights = _exp_(logits.sub_(row_stat[start:start + step, None]))
            else:
                weights = logits.clamp_(min=EXP_FLOOR).sigmoid_()
            weights.mul_(g[start:start + step, None])
            if column_weights is not None:
                weights.add_(column_weights)
            grad_a[start:start + step] = weights @ b
            grad_b.addmm_(weights.t(), block)
            if want_bias:
                weight_sum += weights.sum()
        return grad_a, grad_b, (a * grad_a).sum(), weight_sum


class _Tiled:
    """The `triton` and `cuda` backends: fused tile kernels on the inputs' own dtype with float32
    accumulation, scale and bias as floats (one host sync each)."""

    def __init__(self, kernels):
        self.kernels = kernels

    @staticmethod
    def _common(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        dtype = torch.promote_types(a.dtype, b.dtype)
        return a.to(dtype), b.to(dtype)

    def forward(self, a, b, scale, bias, offset, mode, columns):
        (a, b), scale, bias = self._common(a, b), float(scale), float(bias)
        rows = self.kernels.forward_rows(a, b, scale, bias, offset, mode)
        if not columns:
            return rows, rows.new_empty(0)
        return rows, self.kernels.forward_rows(b, a, scale, bias, None if offset is None else -offset, mode)

    def backward(self, a, b, scale, bias, offset, mode, row_stat, g, col_stat, h, want_bias):
        (a, b), scale, bias = self._common(a, b), float(scale), float(bias)
        grad_a, dots, weight_sums = self.kernels.backward_a(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h)
        grad_b = self.kernels.backward_b(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h)
        return grad_a, grad_b, dots.sum(), weight_sums.sum()


def _implementation(backend: str):
    if backend == "triton":
        from cxrfast.triton import similarity
        return _Tiled(similarity)
    if backend == "cuda":
        from cxrfast.ops import similarity_cuda
        return _Tiled(similarity_cuda)
    return _Blocked


class _SimilarityReduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, scale, bias, offset, mode, columns, backend):
        with torch.autocast(a.device.type, enabled=False):  # autocast would run the GEMMs in half precision
            rows, cols = _implementation(backend).forward(a, b, scale, bias, offset, mode, columns)
        ctx.save_for_backward(a, b, scale, bias, rows, cols)
        ctx.offset, ctx.mode, ctx.columns, ctx.backend = offset, mode, columns, backend
        return rows, cols

    @staticmethod
    def backward(ctx, grad_rows, grad_columns):
        a, b, scale, bias, rows, cols = ctx.saved_tensors
        g = rows.new_zeros(rows.shape) if grad_rows is None else grad_rows.to(rows.dtype).contiguous()
        use_columns = ctx.columns and grad_columns is not None
        col_stat = cols if use_columns else None
        h = grad_columns.to(cols.dtype).contiguous() if use_columns else None
        with torch.autocast(a.device.type, enabled=False):
            grad_a, grad_b, grad_scale, grad_bias = _implementation(ctx.backend).backward(
                a, b, scale, bias, ctx.offset, ctx.mode, rows, g, col_stat, h, ctx.needs_input_grad[3])
        s = accumulation(scale)
        return ((grad_a * s).to(a.dtype), (grad_b * s).to(b.dtype), grad_scale.to(scale.dtype),
                grad_bias.to(bias.dtype) if ctx.needs_input_grad[3] else None, None, None, None, None)


def _check(a: Tensor, b: Tensor, scale: Tensor | float, bias: Tensor | float) -> tuple[Tensor, Tensor]:
    """Shapes checked; scale and bias as tensors on a's device."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (N, D) and (M, D), not {tuple(a.shape)} and {tuple(b.shape)}")
    return tuple(x if isinstance(x, Tensor) else torch.tensor(float(x), device=a.device) for x in (scale, bias))


def similarity_lse(a: Tensor, b: Tensor, scale: Tensor | float = 1.0, *, bias: Tensor | float = 0.0,
                   exclude_diagonal: bool = False, diagonal_offset: int = 0,
                   columns: bool = False) -> tuple[Tensor, Tensor]:
    """(N, D), (M, D) -> row log-sum-exps (N,) of scale · a bᵀ + bias and, with `columns`, column
    log-sum-exps (M,) (else an empty tensor).

    `exclude_diagonal` leaves out entry (i, i + diagonal_offset): the self-similarity when a is b,
    or a's rows inside a larger b (a rank's rows among the gathered ones start at
    `diagonal_offset`). float32 results and accumulation for half, bfloat16 and float32 inputs
    (float64 stays float64); differentiable in a, b, scale and bias."""
    scale, bias = _check(a, b, scale, bias)
    backend = LSE_OP.select(a.device, torch.promote_types(a.dtype, b.dtype))
    if backend == "reference":
        return similarity_lse_reference(a, b, scale, bias=bias, exclude_diagonal=exclude_diagonal,
                                        diagonal_offset=diagonal_offset, columns=columns)
    offset = diagonal_offset if exclude_diagonal else None
    return _SimilarityReduce.apply(a, b, scale, bias, offset, "lse", columns, backend)


def similarity_softplus(a: Tensor, b: Tensor, scale: Tensor | float = 1.0, *, bias: Tensor | float = 0.0,
                        exclude_diagonal: bool = False, diagonal_offset: int = 0) -> Tensor:
    """(N, D), (M, D) -> Σ_j softplus(scale · ⟨a_i, b_j⟩ + bias) for every row i (N,): SigLIP's
    loss over all pairs taken as negatives. Options, precision and gradients as `similarity_lse`."""
    scale, bias = _check(a, b, scale, bias)
    backend = SOFTPLUS_OP.select(a.device, torch.promote_types(a.dtype, b.dtype))
    if backend == "reference":
        return similarity_softplus_reference(a, b, scale, bias=bias, exclude_diagonal=exclude_diagonal,
                                             diagonal_offset=diagonal_offset)
    offset = diagonal_offset if exclude_diagonal else None
    return _SimilarityReduce.apply(a, b, scale, bias, offset, "softplus", False, backend)[0]


def similarity_logits_reference(a: Tensor, b: Tensor, scale: Tensor | float = 1.0, *, bias: Tensor | float = 0.0,
                                exclude_diagonal: bool = False, diagonal_offset: int = 0) -> Tensor:
    """The whole logit matrix scale · a bᵀ + bias (N, M), left-out entries at -inf: the naive form
    every reduction here is defined on, kept by autograd for backward."""
    scale, bias = _check(a, b, scale, bias)
    logits = scale * (accumulation(a) @ accumulation(b).t()) + bias
    if exclude_diagonal:
        rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
        excluded = torch.arange(logits.shape[1], device=logits.device)[None, :] == rows + diagonal_offset
        logits = logits.masked_fill(excluded, float("-inf"))
    return logits


def similarity_lse_reference(a: Tensor, b: Tensor, scale: Tensor | float = 1.0, *, bias: Tensor | float = 0.0,
                             exclude_diagonal: bool = False, diagonal_offset: int = 0,
                             columns: bool = False) -> tuple[Tensor, Tensor]:
    """`similarity_lse` through the whole logit matrix (the naive form)."""
    logits = similarity_logits_reference(a, b, scale, bias=bias, exclude_diagonal=exclude_diagonal,
                                         diagonal_offset=diagonal_offset)
    return torch.logsumexp(logits, 1), torch.logsumexp(logits, 0) if columns else logits.new_empty(0)


def similarity_softplus_reference(a: Tensor, b: Tensor, scale: Tensor | float = 1.0, *, bias: Tensor | float = 0.0,
                                  exclude_diagonal: bool = False, diagonal_offset: int = 0) -> Tensor:
    """`similarity_softplus` through the whole logit matrix (the naive form)."""
    return F.softplus(similarity_logits_reference(a, b, scale, bias=bias, exclude_diagonal=exclude_diagonal,
                                                  diagonal_offset=diagonal_offset)).sum(1)


def similarity_weights_reference(logits: Tensor, mode: str, row_stat: Tensor, g: Tensor, col_stat: Tensor | None = None,
                                 h: Tensor | None = None) -> Tensor:
    """The logits' gradient W (N, M) that every backend's backward contracts with b and a: w_ij =
    g_i · exp(s_ij − row_stat_i) ("lse") or g_i · σ(s_ij) ("softplus"), plus h_j · exp(s_ij −
    col_stat_j) for column log-sum-exps; left-out (-inf) entries weigh 0."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    phi = torch.exp(logits - row_stat[:, None]) if mode == "lse" else torch.sigmoid(logits)
    weights = g[:, None] * phi
    if col_stat is not None:
        weights = weights + h[None, :] * torch.exp(logits - col_stat[None, :])
    return weights
