"""Sinkhorn–Knopp codes and SwAV's swapped prediction, with the N × K code matrix kept as scale
vectors.

SwAV's codes for N samples and K prototypes are Q = diag(c) · E · diag(r) with E = exp(S / ε) of the
scores S (N, K), scaled alternately so that every prototype's total is N/K and every sample's is
1 (Caron et al., 2020). SwAV's and lightly's loops rewrite Q in place at each half-iteration,
six passes over N × K values per iteration; here only the scales move: r_k = 1 / (K · Σ_n E_nk
c_n) and c_n = 1 / (N · Σ_k E_nk r_k), N and the sums over n taken over every rank, two
matrix–vector passes per iteration, and c × N after the last. Scores of any range stay finite:
each prototype's largest score is subtracted first (the first prototype scaling absorbs it), then
each sample's largest remaining one, its factor exp(−shift / ε) ≤ 1 becoming the sample's
starting scale (SwAV starts from 1), so E ≤ 1 and no first prototype total below 1.

The swapped prediction (SwAV's loss) needs, for every code crop i and every other crop v, the
cross-entropy −Σ_k q_ik log softmax(s_v / τ)_k. As Σ_k q_ik = 1 it is lse_v − ⟨q_i, s_v⟩ / τ, so the
forward keeps one log-sum-exp per crop and sample, and backward recomputes q from the scores and
the scales: the gradient (count_v · softmax(s_v / τ) − Σ_{i≠v} q_i) / τ is the only other (V, B,
K) tensor, where SwAV's loop keeps a log-softmax and a product per crop pair.

Backends: `reference` is SwAV's loop (codes materialised and rewritten, a log-softmax per pair);
`cpu` writes E once (float32 or float64) and runs the passes and the loss through torch ops, on
any device; `triton` and `cuda` are fused kernels (kernels/triton/sinkhorn.py,
kernels/cuda/sinkhorn.cu) that read the scores in their own dtype and recompute E wherever a pass
needs it, so nothing N × K is written but the codes `sinkhorn` returns and the loss's gradient.
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

# The fused kernels sum in float32, so float64 (gradcheck) stays on cpu or the reference.
_FUSED = frozenset({torch.float16, torch.bfloat16, torch.float32})
_SUPPORT = {"reference": Support(FLOATING), "cpu": Support(FLOATING), "triton": Support(_FUSED),
            "cuda": Support(_FUSED, frozenset({"cuda"}))}
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

    def last(self, samples: int) -> SinkhornScaling:
        """The scaling of the last `samples` rows: the batch's, after the queue's."""
        rows = slice(self.columns.shape[0] - samples, None)
        return self._replace(sample_shift=self.sample_shift[rows], columns=self.columns[rows])


def _exponentials(shifted: Tensor, sample_shift: Tensor, epsilon: float) -> Tensor:
    """exp((shifted − sample_shift) / ε) in place, exponents floored."""
    return shifted.sub_(sample_shift[:, None]).mul_(1 / epsilon).clamp_(min=EXP_FLOOR).exp_()


class _Stored:
    """The cpu backend's Sinkhorn passes: E written once over the parts, each pass one of torch's
    matrix–vector products."""

    def __init__(self, parts: list[Tensor], shift: Tensor, epsilon: float):
        e = (torch.cat(parts) if len(parts) > 1 else parts[0]).sub(shift)
        self.sample_shift = e.amax(1)
        self.e = _exponentials(e, self.sample_shift, epsilon)

    def prototype_totals(self, columns: Tensor) -> Tensor:
        return torch.mv(self.e.t(), columns)

    def sample_totals(self, rows: Tensor) -> Tensor:
        return torch.mv(self.e, rows)


class _Recomputed:
    """The fused backends' Sinkhorn passes: each reads the scores again and recomputes E, part by
    part (the queue's rows, then the batch's), so neither E nor the parts' concatenation exists."""

    def __init__(self, kernels, parts: list[Tensor], shift: Tensor, epsilon: float):
        self.kernels, self.parts, self.shift, self.epsilon = kernels, parts, shift, epsilon
        self.sample_shifts = [kernels.sample_shift(p, shift) for p in parts]
        self.sample_shift = torch.cat(self.sample_shifts)

    def prototype_totals(self, columns: Tensor) -> Tensor:
        columns = columns.split([p.shape[0] for p in self.parts])
        return sum(self.kernels.prototype_totals(p, self.shift, own, c, self.epsilon)
                   for p, own, c in zip(self.parts, self.sample_shifts, columns))

    def sample_totals(self, rows: Tensor) -> Tensor:
        return torch.cat([self.kernels.sample_totals(p, self.shift, own, rows, self.epsilon)
                          for p, own in zip(self.parts, self.sample_shifts)])


@torch.no_grad()
def _scale(parts: list[Tensor], epsilon: float, iterations: int, distributed: bool, backend):
    """The scaling of the rows of `parts` taken in order, and the backend's passes (the cpu
    backend's E becomes the swapped prediction's codes without another exp)."""
    parts = [backend.operand(p.detach()) for p in parts]
    world = _world(distributed)
    shift = _all_reduce(torch.stack([accumulation(p.amax(0)) for p in parts]).amax(0), world, dist.ReduceOp.MAX)
    passes = backend.passes(parts, shift, epsilon)
    columns = passes.sample_shift.mul(1 / epsilon).exp_()  # SwAV's ones, less each sample's factor
    samples, prototypes = passes.sample_shift.shape[0] * world, shift.shape[0]
    for _ in range(iterations):  # the totals 1/K and 1/N keep the scales from drifting apart
        rows = _all_reduce(passes.prototype_totals(columns), world).mul_(prototypes).reciprocal_()
        columns = passes.sample_totals(rows).mul_(samples).reciprocal_()
    columns.mul_(samples)
    return SinkhornScaling(shift, passes.sample_shift, rows, columns, epsilon), passes


def sinkhorn_scaling(scores: Tensor | Sequence[Tensor], epsilon: float = 0.05, iterations: int = 3, *,
                     distributed: bool = True) -> SinkhornScaling:
    """The scales of Sinkhorn–Knopp codes of `scores` (N, K), or of row blocks of one N × K
    matrix given in order (SwAV's queue, then the batch), with the sums over every rank of the
    process group when `distributed` and one is initialised. No gradient."""
    parts = _check(scores, epsilon, iterations)
    backend = SINKHORN_OP.select(parts[0].device, parts[0].dtype)
    return _scale(parts, epsilon, iterations, distributed, _implementation(backend))[0]


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
    parts = _check(scores, epsilon, iterations)
    return _scale(parts, epsilon, iterations, distributed, _implementation(backend))[0].codes(scores)


def _blocks(batch: int, crops: int, prototypes: int) -> range:
    return range(0, batch, max(1, BLOCK_ELEMENTS // max(1, crops * prototypes)))


class _Blocked:
    """The `cpu` backend: torch ops on float32 (or float64) scores, blocks of samples at a time."""

    operand = staticmethod(accumulation)
    passes = _Stored

    @staticmethod
    def log_sum_exps(s: Tensor, temperature: float) -> Tensor:
        crops, batch, prototypes = s.shape
        blocks = _blocks(batch, crops, prototypes)
        lse = s.new_empty(crops, batch)
        for start in blocks:
            x = s[:, start:start + blocks.step] / temperature
            top = x.amax(2, keepdim=True)
            lse[:, start:start + blocks.step] = x.sub_(top).exp_().sum(2).log_().add_(top[..., 0])
        return lse

    @staticmethod
    def code_dots(s: Tensor, crop: int, scaling: SinkhornScaling, passes: _Stored) -> Tensor:
        """⟨q_b, s_vb⟩ (V, B) for the codes q of crop `crop`: E's batch rows become them in place."""
        crops, batch, prototypes = s.shape
        codes = passes.e[passes.e.shape[0] - batch:].mul_(scaling.rows).mul_(scaling.columns[:, None])
        blocks = _blocks(batch, crops, prototypes)
        dots = s.new_empty(crops, batch)
        for start in blocks:
            rows = slice(start, start + blocks.step)
            dots[:, rows] = torch.einsum("vbk,bk->vb", s[:, rows], codes[rows])
        return dots

    @staticmethod
    def gradient(scores: Tensor, lse: Tensor, scalings: list[SinkhornScaling], assign: tuple[int, ...],
                 counts: Tensor, weights: Tensor, temperature: float) -> Tensor:
        s = accumulation(scores)
        crops, batch, prototypes = s.shape
        blocks = _blocks(batch, crops, prototypes)
        grad_scores = torch.empty_like(scores)
        for start in blocks:
            block = s[:, start:start + blocks.step]
            g = (block / temperature).sub_(lse[:, start:start + blocks.step, None]).exp_().mul_(counts[:, None, None])
            for scaling, i in zip(scalings, assign):
                q = scaling.codes(block[i], start)
                g -= q
                g[i] += q
            grad_scores[:, start:start + blocks.step] = g.mul_(weights[None, start:start + blocks.step, None])
        return grad_scores


class _Fused:
    """The `triton` and `cuda` backends: kernels on the scores' own dtype (float32 sums), the
    codes recomputed from the scores and the scales wherever they are needed."""

    def __init__(self, kernels):
        self.kernels = kernels

    @staticmethod
    def operand(scores: Tensor) -> Tensor:
        return scores  # read as they are: a float32 copy would be another N × K array

    def passes(self, parts: list[Tensor], shift: Tensor, epsilon: float) -> _Recomputed:
        return _Recomputed(self.kernels, parts, shift, epsilon)

    def log_sum_exps(self, s: Tensor, temperature: float) -> Tensor:
        return self.kernels.log_sum_exps(s, temperature)

    def code_dots(self, s: Tensor, crop: int, scaling: SinkhornScaling, passes: _Recomputed) -> Tensor:
        return self.kernels.code_dots(s, crop, *scaling)

    def gradient(self, scores, lse, scalings, assign, counts, weights, temperature):
        shifts, sample_shifts, rows, columns = (torch.stack(v) for v in zip(*(scaling[:4] for scaling in scalings)))
        return self.kernels.gradient(scores, lse, weights, counts, assign, shifts, sample_shifts, rows, columns,
                                     temperature, scalings[0].epsilon)


def _implementation(backend: str):
    if backend == "triton":
        from cxrfast.triton import sinkhorn as kernels
        return _Fused(kernels)
    if backend == "cuda":
        from cxrfast.ops import sinkhorn_cuda
        return _Fused(sinkhorn_cuda)
    return _Blocked  # also where the reference, which has no scale vectors, is asked for them


class _SwappedPrediction(torch.autograd.Function):
    """(V, B, K) scores -> (B,) SwAV losses; Sinkhorn runs inside, one code crop at a time, so at
    most one crop's passes (the cpu backend's E, which becomes the crop's codes) are alive at once."""

    @staticmethod
    def forward(ctx, scores, queue, assign, temperature, epsilon, iterations, distributed, backend):
        implementation = _implementation(backend)
        s = implementation.operand(scores)
        crops, batch, _ = s.shape
        lse = implementation.log_sum_exps(s, temperature)
        # Σ over code crops i of Σ_{v≠i} lse_v, less Σ_{v≠i} ⟨q_i, s_v⟩ / τ below.
        losses = len(assign) * lse.sum(0) - lse[list(assign)].sum(0)
        scalings = []
        for i, queued in zip(assign, queue):
            scaling, passes = _scale([s[i]] if queued is None else [queued, s[i]], epsilon, iterations, distributed,
                                     implementation)
            scalings.append(scaling.last(batch))
            dots = implementation.code_dots(s, i, scalings[-1], passes)
            losses -= (dots.sum(0) - dots[i]) / temperature
            del passes
        ctx.save_for_backward(scores, lse, *(v for scaling in scalings for v in scaling[:4]))
        ctx.assign, ctx.temperature, ctx.epsilon, ctx.backend = assign, temperature, epsilon, backend
        return losses / (len(assign) * (crops - 1))

    @staticmethod
    def backward(ctx, grad):
        scores, lse, *vectors = ctx.saved_tensors
        assign, crops = ctx.assign, scores.shape[0]
        scalings = [SinkhornScaling(*vectors[4 * a:4 * a + 4], ctx.epsilon) for a in range(len(assign))]
        # Each crop is predicted from every code crop but itself.
        counts = torch.tensor([len(assign) - (v in assign) for v in range(crops)], dtype=lse.dtype,
                              device=lse.device)
        weights = accumulation(grad) / (len(assign) * (crops - 1) * ctx.temperature)
        grad_scores = _implementation(ctx.backend).gradient(scores, lse, scalings, assign, counts, weights,
                                                            ctx.temperature)
        return grad_scores, None, None, None, None, None, None, None


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
    return _SwappedPrediction.apply(scores, tuple(queue), assign, temperature, epsilon, iterations, distributed,
                                    backend)


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
