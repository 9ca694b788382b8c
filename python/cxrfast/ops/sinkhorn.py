"""Sinkhorn–Knopp codes and SwAV's swapped prediction, with the N × K code matrix kept as scale
vectors.

SwAV's codes for N samples and K prototypes are Q = diag(c) · E · diag(r) with E = exp(S / ε) of the
scores S (N, K), scaled alternately so that every prototype's total is N/K and every sample's is
1 (Caron et al., 2020). SwAV's and lightly's loops rewrite Q in place at each half-iteration,
six passes over N × K values per iteration; here E is written once and only the scales move: r_k
= 1 / (K · Σ_n E_nk c_n) and c_n = 1 / (N · Σ_k E_nk r_k), N and the sums over n taken over every
rank, two matrix–vector products per iteration, and c × N after the last. Scores of any range stay finite: each prototype's largest score is
subtracted first (the first prototype scaling absorbs it), then each sample's largest remaining
one, its factor exp(−shift / ε) ≤ 1 becoming the sample's starting scale (SwAV starts from 1), so
E ≤ 1 and no first prototype total below 1.

The swapped prediction (SwAV's loss) needs, for every code crop i and every other crop v, the
cross-entropy −Σ_k q_ik log softmax(s_v / τ)_k. As Σ_k q_ik = 1 it is lse_v − ⟨q_i, s_v⟩ / τ, so the
forward keeps one log-sum-exp per crop and sample, and backward recomputes q from the scores and
the scales block by block: the gradient (count_v · softmax(s_v / τ) − Σ_{i≠v} q_i) / τ is the only
other (V, B, K) tensor, where SwAV's loop keeps a log-softmax and a product per crop pair.

Backends: `reference` is SwAV's loop (codes materialised and rewritten, a log-softmax per pair);
`cpu` is the scale-vector form above in torch ops, which runs on any device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from cxrfast.ops.dispatch import FLOATING, Op, Support
from cxrfast.ops.similarity import BLOCK_ELEMENTS, EXP_FLOOR, accumulation

_SUPPORT = {"reference": Support(FLOATING), "cpu": Support(FLOATING)}
SINKHORN_OP, SWAPPED_PREDICTION_OP = Op("sinkhorn", _SUPPORT), Op("swapped_prediction", _SUPPORT)


def _world(distributed: bool) -> int:
    """The number of ranks the sums run over: the process group's size when asked and present."""
    if distributed and dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _all_reduce(x: Tensor, world: int, op=dist.ReduceOp.SUM) -> Tensor:
    if world > 1:
        dist.all_reduce(x, op=op)
    return x


def _check(scores: Tensor | Sequence[Tensor], epsilon: float, iterations: int) -> list[Tensor]:
    parts = [scores] if isinstance(scores, Tensor) else list(scores)
    if not parts or any(p.ndim != 2 or p.shape[1] != parts[0].shape[1] for p in parts) or parts[0].shape[1] < 1:
        raise ValueError("scores must be (N, K) tensors with one K ≥ 1")
    if epsilon <= 0 or iterations < 1:
        raise ValueError(f"Sinkhorn needs epsilon > 0 and at least one iteration, not {epsilon} and {iterations}")
    return parts


class SinkhornScaling(NamedTuple):
    """Codes q_nk = exp((s_nk − shift_k − sample_shift_n) / epsilon) · rows_k · columns_n of the
    scores they were computed from."""

    shift: Tensor  # (K,) each prototype's largest score over every rank's samples
    sample_shift: Tensor  # (N,) each sample's largest score less its prototype's shift (≤ 0)
    rows: Tensor  # (K,)
    columns: Tensor  # (N,)
    epsilon: float

    def codes(self, scores: Tensor, start: int = 0) -> Tensor:
        """The codes of `scores`, which are rows start, start + 1, ... of the scaled scores."""
        rows = slice(start, start + scores.shape[0])
        e = _exponentials(accumulation(scores.detach()).sub(self.shift), self.sample_shift[rows], self.epsilon)
        return e.mul_(self.rows).mul_(self.columns[rows, None])


def _exponentials(shifted: Tensor, sample_shift: Tensor, epsilon: float) -> Tensor:
    """exp((shifted − sample_shift) / ε) in place, exponents floored."""
    return shifted.sub_(sample_shift[:, None]).mul_(1 / epsilon).clamp_(min=EXP_FLOOR).exp_()


@torch.no_grad()
def sinkhorn_scaling(scores: Tensor | Sequence[Tensor], epsilon: float = 0.05, iterations: int = 3, *,
                     distributed: bool = True) -> SinkhornScaling:
    """The scales of Sinkhorn–Knopp codes of `scores` (N, K), or of row blocks of one N × K
    matrix given in order (SwAV's queue, then the batch), with the sums over every rank of the
    process group when `distributed` and one is initialised. No gradient."""
    return _scaled_exponentials(scores, epsilon, iterations, distributed)[0]


def _scaled_exponentials(scores, epsilon, iterations, distributed) -> tuple[SinkhornScaling, Tensor]:
    """The scales and E (N, K), which the swapped prediction turns into codes without another exp."""
    parts = [accumulation(p.detach()) for p in _check(scores, epsilon, iterations)]
    world = _world(distributed)
    shift = _all_reduce(torch.stack([p.amax(0) for p in parts]).amax(0), world, dist.ReduceOp.MAX)
    e = (torch.cat(parts) if len(parts) > 1 else parts[0]).sub(shift)
    sample_shift = e.amax(1)
    columns = sample_shift.mul(1 / epsilon).exp_()  # SwAV's ones, less each sample's factor
    e = _exponentials(e, sample_shift, epsilon)  # written once; only the scales change below
    samples, prototypes = e.shape[0] * world, e.shape[1]
    for _ in range(iterations):  # the totals 1/K and 1/N keep the scales from drifting apart
        rows = _all_reduce(torch.mv(e.t(), columns), world).mul_(prototypes).reciprocal_()
        columns = torch.mv(e, rows).mul_(samples).reciprocal_()
    columns.mul_(samples)
    return SinkhornScaling(shift, sample_shift, rows, columns, epsilon), e


@torch.no_grad()
def sinkhorn_reference(scores: Tensor, epsilon: float = 0.05, iterations: int = 3, *,
                       distributed: bool = True) -> Tensor:
    """SwAV's distributed_sinkhorn as its code runs it: Q = exp(S / ε)ᵀ normalised to sum 1, then
    rows to 1/K and columns to 1/N in place, `iterations` times, then × N; returns Qᵀ (N, K)."""
    _check(scores, epsilon, iterations)
    world = _world(distributed)
    q = torch.exp(accumulation(scores) / epsilon).t()
    samples, prototypes = q.shape[1] * world, q.shape[0]
    q /= _all_reduce(q.sum(), world)
    for _ in range(iterations):
        q /= _all_reduce(q.sum(1, keepdim=True), world)
        q /= prototypes
        q /= q.sum(0, keepdim=True)
        q /= samples
    q *= samples
    return q.t()


def sinkhorn(scores: Tensor, epsilon: float = 0.05, iterations: int = 3, *, distributed: bool = True) -> Tensor:
    """Sinkhorn–Knopp codes (N, K) of `scores` (N, K): every row sums to 1, every column to about
    N/K (exactly, as the iterations grow); float32 for half and single precision scores."""
    backend = SINKHORN_OP.select(scores.device, scores.dtype)
    if backend == "reference":
        return sinkhorn_reference(scores, epsilon, iterations, distributed=distributed)
    return sinkhorn_scaling(scores, epsilon, iterations, distributed=distributed).codes(scores)


def _blocks(batch: int, crops: int, prototypes: int) -> range:
    return range(0, batch, max(1, BLOCK_ELEMENTS // max(1, crops * prototypes)))


class _SwappedPrediction(torch.autograd.Function):
    """(V, B, K) scores -> (B,) SwAV losses; Sinkhorn runs inside, one code crop at a time, so
    one N × K array of exponentials is alive at once and becomes the crop's codes in place."""

    @staticmethod
    def forward(ctx, scores, queue, assign, temperature, epsilon, iterations, distributed):
        s = accumulation(scores)
        crops, batch, prototypes = s.shape
        blocks = _blocks(batch, crops, prototypes)
        lse = s.new_empty(crops, batch)
        for start in blocks:
            x = s[:, start:start + blocks.step] / temperature
            top = x.amax(2, keepdim=True)
            lse[:, start:start + blocks.step] = x.sub_(top).exp_().sum(2).log_().add_(top[..., 0])
        # Σ over code crops i of Σ_{v≠i} lse_v, less Σ_{v≠i} ⟨q_i, s_v⟩ / τ below.
        losses = len(assign) * lse.sum(0) - lse[list(assign)].sum(0)
        scalings = []
        for i, queued in zip(assign, queue):
            scaling, e = _scaled_exponentials([s[i]] if queued is None else [queued, s[i]], epsilon, iterations,
                                              distributed)
            offset = e.shape[0] - batch  # the queue's rows come first
            codes = e[offset:].mul_(scaling.rows).mul_(scaling.columns[offset:, None])
            for start in blocks:
                rows = slice(start, start + blocks.step)
                dots = torch.einsum("vbk,bk->vb", s[:, rows], codes[rows])
                losses[rows] -= (dots.sum(0) - dots[i]) / temperature
            del e, codes
            scalings.append(SinkhornScaling(scaling.shift, scaling.sample_shift[offset:], scaling.rows,
                                            scaling.columns[offset:], epsilon))
        ctx.save_for_backward(scores, lse, *(v for scaling in scalings for v in scaling[:4]))
        ctx.assign, ctx.temperature, ctx.epsilon = assign, temperature, epsilon
        return losses / (len(assign) * (crops - 1))

    @staticmethod
    def backward(ctx, grad):
        scores, lse, *vectors = ctx.saved_tensors
        s, assign, temperature = accumulation(scores), ctx.assign, ctx.temperature
        scalings = [SinkhornScaling(*vectors[4 * a:4 * a + 4], ctx.epsilon) for a in range(len(assign))]
        crops, batch, prototypes = s.shape
        step = _blocks(batch, crops, prototypes).step
        # Each crop is predicted from every code crop but itself.
        counts = torch.tensor([len(assign) - (v in assign) for v in range(crops)], dtype=s.dtype, device=s.device)
        weights = accumulation(grad) / (len(assign) * (crops - 1) * temperature)
        grad_scores = torch.empty_like(scores)
        for start in _blocks(batch, crops, prototypes):
            block = s[:, start:start + step]
            g = (block / temperature).sub_(lse[:, start:start + step, None]).exp_().mul_(counts[:, None, None])
            for scaling, i in zip(scalings, assign):
                q = scaling.codes(block[i], start)
                g -= q
                g[i] += q
            grad_scores[:, start:start + step] = g.mul_(weights[None, start:start + step, None])
        return grad_scores, None, None, None, None, None, None


def swapped_prediction(scores: Tensor, assign: Sequence[int] = (0, 1), temperature: float = 0.1,
                       epsilon: float = 0.05, iterations: int = 3, *, queue: Sequence[Tensor | None] | None = None,
                       distributed: bool = True) -> Tensor:
    """SwAV's loss for each sample (B,) from the prototype scores of V crops (V, B, K): the codes
    of each crop in `assign` (Sinkhorn over that crop's scores after the queue's, `queue[a]` (Q,
    K) or None, summed over every rank when `distributed`; no gradient) are predicted from every
    other crop at `temperature`, the cross-entropies averaged over the V − 1 crops and the code
    crops. float32 results for half and single precision scores; differentiable in the scores."""
    if scores.ndim != 3 or scores.shape[0] < 2:
        raise ValueError(f"scores must be (V, B, K) with at least two crops, not {tuple(scores.shape)}")
    assign = tuple(int(i) for i in assign)
    queue = [None] * len(assign) if queue is None else list(queue)
    if not assign or len(set(assign)) != len(assign) or not all(0 <= i < scores.shape[0] for i in assign):
        raise ValueError(f"assign must name distinct crops among {scores.shape[0]}, not {assign}")
    if len(queue) != len(assign) or temperature <= 0:
        raise ValueError("one queue entry (or None) per code crop and a positive temperature are needed")
    backend = SWAPPED_PREDICTION_OP.select(scores.device, scores.dtype)
    if backend == "reference":
        return swapped_prediction_reference(scores, assign, temperature, epsilon, iterations, queue=queue,
                                            distributed=distributed)
    return _SwappedPrediction.apply(scores, tuple(queue), assign, temperature, epsilon, iterations, distributed)


def swapped_prediction_reference(scores: Tensor, assign: Sequence[int] = (0, 1), temperature: float = 0.1,
                                 epsilon: float = 0.05, iterations: int = 3, *,
                                 queue: Sequence[Tensor | None] | None = None, distributed: bool = True) -> Tensor:
    """`swapped_prediction` as SwAV's training loop computes it: codes materialised by
    `sinkhorn_reference` over the queue's scores then the crop's (the batch's rows kept), and one
    log-softmax and product per (code crop, other crop) pair, kept by autograd."""
    queue = [None] * len(assign) if queue is None else queue
    s = accumulation(scores)
    total = 0
    for i, queued in zip(assign, queue):
        rows = s[i].detach() if queued is None else torch.cat([accumulation(queued), s[i].detach()])
        q = sinkhorn_reference(rows, epsilon, iterations, distributed=distributed)[-s.shape[1]:]
        for v in range(s.shape[0]):
            if v != i:
                total = total - torch.sum(q * F.log_softmax(s[v] / temperature, dim=1), dim=1)
    return total / (len(assign) * (s.shape[0] - 1))
