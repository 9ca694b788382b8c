"""similarity_lse: the log-sum-exp of every row (and column) of scale · a bᵀ, never stored whole.

Contrastive losses (NT-Xent, MoCo, CLIP) are each a log-sum-exp over a row of similarity logits
minus a positive logit. The positive is one dot product per row, cheap to take with plain
autograd; the log-sum-exp is where the N×M logit matrix appears. Here it is computed over blocks
of rows: one GEMM per block, the row log-sum-exp taken at once and the column log-sum-exp merged
online across blocks. Only the log-sum-exps are kept for backward, which recomputes each block's
logits and turns them into both input gradients; memory grows with (N + M)·D, never N·M.

Gradient: with p = exp(s − row_lse) and q = exp(s − col_lse), upstream g (rows) and h (columns),
∂/∂s_ij = g_i p_ij + h_j q_ij =: w_ij; then ∂a = scale · W b, ∂b = scale · Wᵀ a, ∂scale = Σ w ∘ a bᵀ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cxrfast.ops.dispatch import select_backend

BACKENDS = ("reference", "cpu")
# Rows per block: a block's logits are rows × M float32 values; 2^21 of them (8 MiB) keep the
# GEMM efficient and the scratch far below the N×M matrix at the sizes where it matters.
BLOCK_ELEMENTS = 1 << 21


def accumulation(x: Tensor) -> Tensor:
    """float32 for half and single precision inputs; float64 stays float64 (gradcheck)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _rows_per_block(columns: int) -> int:
    return max(16, BLOCK_ELEMENTS // max(columns, 1))


def _block_logits(a: Tensor, b: Tensor, scale: Tensor, start: int, excluded: int | None) -> Tensor:
    """scale · a[start:] bᵀ for one block, entry (i, i + excluded) at -inf (the self-similarity)
    unless `excluded` is None."""
    logits = (a @ b.t()).mul_(scale)
    if excluded is not None:
        rows = torch.arange(logits.shape[0], device=logits.device)
        columns = rows + start + excluded
        inside = (columns >= 0) & (columns < logits.shape[1])
        logits[rows[inside], columns[inside]] = float("-inf")
    return logits


class _SimilarityLSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, scale: Tensor, excluded: int | None, columns: bool):
        a32, b32, s = accumulation(a), accumulation(b), accumulation(scale)
        n, m = a32.shape[0], b32.shape[0]
        row_lse = a32.new_empty(n)
        col_max = a32.new_full((m,), float("-inf"))
        col_sum = a32.new_zeros(m)
        step = _rows_per_block(m)
        for start in range(0, n, step):
            logits = _block_logits(a32[start:start + step], b32, s, start, excluded)
            if columns:  # online merge: rescale the running sums to the new column maximum
                new_max = torch.maximum(col_max, logits.max(0).values)
                safe = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
                col_sum.mul_(torch.exp(col_max - safe)).add_(torch.exp(logits - safe).sum(0))
                col_max = new_max
            row_lse[start:start + step] = torch.logsumexp(logits, 1)
        col_lse = col_max + torch.log(col_sum) if columns else a32.new_empty(0)
        ctx.save_for_backward(a, b, scale, row_lse, col_lse)
        ctx.excluded, ctx.columns = excluded, columns
        return row_lse, col_lse

    @staticmethod
    def backward(ctx, grad_rows: Tensor | None, grad_columns: Tensor | None):
        a, b, scale, row_lse, col_lse = ctx.saved_tensors
        a32, b32, s = accumulation(a), accumulation(b), accumulation(scale)
        n, m = a32.shape[0], b32.shape[0]
        grad_rows = a32.new_zeros(n) if grad_rows is None else grad_rows.to(a32.dtype)
        use_columns = ctx.columns and grad_columns is not None
        want_scale = ctx.needs_input_grad[2]
        grad_a, grad_b = torch.zeros_like(a32), torch.zeros_like(b32)
        grad_scale = a32.new_zeros(())
        step = _rows_per_block(m)
        for start in range(0, n, step):
            block = a32[start:start + step]
            logits = _block_logits(block, b32, s, start, ctx.excluded)
            # In place where possible: each pass over a block is memory traffic.
            kept = logits.nan_to_num(neginf=0.0) if want_scale else None
            column_weights = (torch.exp(logits - col_lse[None, :]).mul_(grad_columns.to(a32.dtype)[None, :])
                              if use_columns else None)
            weights = logits.sub_(row_lse[start:start + step, None]).exp_().mul_(grad_rows[start:start + step, None])
            if column_weights is not None:
                weights.add_(column_weights)
            grad_a[start:start + step] = weights @ b32
            grad_b.addmm_(weights.t(), block)
            if want_scale:  # ∂/∂scale = Σ w ∘ a bᵀ = Σ w ∘ logits / scale (scale ≠ 0)
                grad_scale += (weights * kept).sum() / s
        grad_a.mul_(s)
        grad_b.mul_(s)
        return grad_a.to(a.dtype), grad_b.to(b.dtype), grad_scale.to(scale.dtype), None, None


def similarity_lse(a: Tensor, b: Tensor, scale: Tensor | float = 1.0, *, exclude_diagonal: bool = False,
                   diagonal_offset: int = 0, columns: bool = False) -> tuple[Tensor, Tensor]:
    """(N, D), (M, D) -> row log-sum-exps (N,) of scale · a bᵀ and, with `columns`, column
    log-sum-exps (M,) (else an empty tensor). `exclude_diagonal` leaves out entry
    (i, i + diagonal_offset): the self-similarity when a is b, or a's rows inside a larger b (a
    rank's rows among the gathered ones start at `diagonal_offset`). float32 results and accumulation for half, bfloat16 and float32
    inputs (float64 stays float64);
    differentiable in a, b and scale (which must not be 0)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (N, D) and (M, D), not {tuple(a.shape)} and {tuple(b.shape)}")
    if not isinstance(scale, Tensor):
        scale = torch.tensor(float(scale), device=a.device)
    if select_backend(a.device, BACKENDS) == "reference":
        return similarity_lse_reference(a, b, scale, exclude_diagonal=exclude_diagonal,
                                        diagonal_offset=diagonal_offset, columns=columns)
    return _SimilarityLSE.apply(a, b, scale, diagonal_offset if exclude_diagonal else None, columns)


def similarity_lse_reference(a: Tensor, b: Tensor, scale: Tensor | float = 1.0, *, exclude_diagonal: bool = False,
                             diagonal_offset: int = 0, columns: bool = False) -> tuple[Tensor, Tensor]:
    """The naive form: the whole logit matrix, kept by autograd for backward."""
    logits = scale * (accumulation(a) @ accumulation(b).t())
    if exclude_diagonal:
        rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
        excluded = torch.arange(logits.shape[1], device=logits.device)[None, :] == rows + diagonal_offset
        logits = logits.masked_fill(excluded, float("-inf"))
    col_lse = torch.logsumexp(logits, 0) if columns else logits.new_empty(0)
    return torch.logsumexp(logits, 1), col_lse
