"""DINO's self-distillation loss over multi-crop lists (the DINO paper's semantics).

The teacher's global crops are centred and sharpened into probabilities q = softmax((t − c)/τ_t)
(no gradient); every student crop v, over its temperature τ_s, is pulled towards every teacher
crop except the one of the same view: the loss is the mean over those pairs of the batch-mean
cross-entropy −Σ_k q_k log softmax(s_v)_k. The centre c is a running mean of the teacher's
outputs, all-reduced across ranks, updated after each training call.

The pairs are not formed one by one (each would keep a B×K log-softmax for backward): for a
student crop the sum over its teachers is c_v · logsumexp(s_v) − ⟨Σ_t q_t, s_v⟩ with c_v its number
of teachers, so backward needs only the student output, the teachers' probabilities and one
log-sum-exp per row: the gradient c_v · softmax(s_v) − Σ_t q_t is recomputed crop by crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cxrfast.losses.reduction import check_reduction, reduce
from cxrfast.ops.similarity import accumulation


def _teachers_of(crop: int, teachers: Tensor, total: Tensor) -> tuple[Tensor, int]:
    """The summed probabilities of the teacher crops that student crop `crop` learns from, and
    their number: all of them, less the same view for the first (global) crops."""
    if crop < teachers.shape[0]:
        return total - teachers[crop], teachers.shape[0] - 1
    return total, teachers.shape[0]


class _CrossEntropyToTeachers(torch.autograd.Function):
    """(V, B, K) student logits, (G, B, K) teacher probabilities -> (V, B) summed cross-entropies."""

    @staticmethod
    def forward(ctx, student: Tensor, teachers: Tensor, temperature: float) -> Tensor:
        total = teachers.sum(0)
        losses = teachers.new_empty(student.shape[:2])
        lse = teachers.new_empty(student.shape[:2])
        for crop in range(student.shape[0]):
            logits = accumulation(student[crop]) / temperature
            target, count = _teachers_of(crop, teachers, total)
            lse[crop] = torch.logsumexp(logits, 1)
            losses[crop] = count * lse[crop] - (target * logits).sum(1)
        ctx.save_for_backward(student, teachers, lse)
        ctx.temperature = temperature
        return losses

    @staticmethod
    def backward(ctx, grad: Tensor):
        student, teachers, lse = ctx.saved_tensors
        total = teachers.sum(0)
        grad_student = torch.empty_like(student)
        for crop in range(student.shape[0]):
            logits = accumulation(student[crop]) / ctx.temperature
            target, count = _teachers_of(crop, teachers, total)
            softmax = logits.sub_(lse[crop, :, None]).exp_()
            grad_student[crop] = softmax.mul_(count).sub_(target).mul_(grad[crop, :, None] / ctx.temperature)
        return grad_student, None, None


def _crops(outputs: Tensor | Sequence[Tensor], batch: int, name: str) -> Tensor:
    """(crops, B, K) from a list of (B, K) crops or DINO's concatenated (crops·B, K) tensor with
    `batch` rows per crop."""
    if isinstance(outputs, Tensor):
        if outputs.ndim != 2 or batch < 1 or outputs.shape[0] % batch:
            raise ValueError(f"{name} output must be (crops·B, K) with B = {batch}, not {tuple(outputs.shape)}")
        return outputs.reshape(-1, batch, outputs.shape[1])
    if not outputs or any(o.ndim != 2 or o.shape != outputs[0].shape for o in outputs):
        raise ValueError(f"{name} crops must be (B, K) tensors of one shape")
    return torch.stack(list(outputs))


class DINOLoss(nn.Module):
    def __init__(self, out_dim: int, teacher_temp: float = 0.04, student_temp: float = 0.1,
                 center_momentum: float = 0.9, global_crops: int = 2, reduction: str = "mean"):
        super().__init__()
        if out_dim <= 0 or teacher_temp <= 0 or student_temp <= 0 or not 0 <= center_momentum <= 1:
            raise ValueError("out_dim and the temperatures must be positive and center_momentum in [0, 1]")
        self.teacher_temp, self.student_temp, self.center_momentum = teacher_temp, student_temp, center_momentum
        self.global_crops = global_crops
        self.reduction = check_reduction(reduction)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: Tensor | Sequence[Tensor], teacher: Tensor | Sequence[Tensor],
                teacher_temp: float | None = None) -> Tensor:
        """Student crops (global ones first, in the teacher's order) and the teacher's global crops,
        as lists of (B, K) or concatenated; `teacher_temp` overrides the module's for this call
        (DINO warms it up). Returns the loss ((B,) per sample with "none")."""
        teachers = _crops(teacher, len(teacher) // self.global_crops, "teacher").detach()
        students = _crops(student, teachers.shape[1], "student")
        if students.shape[1:] != teachers.shape[1:] or students.shape[2] != self.center.shape[1]:
            raise ValueError(f"student crops {tuple(students.shape[1:])} and teacher crops "
                             f"{tuple(teachers.shape[1:])} must both be (B, {self.center.shape[1]})")
        if students.shape[0] < teachers.shape[0] or students.shape[0] < 2:
            raise ValueError("the student needs every global crop (first) and at least two crops in all")
        temperature = self.teacher_temp if teacher_temp is None else teacher_temp
        probabilities = F.softmax((accumulation(teachers) - self.center) / temperature, dim=-1)
        losses = _CrossEntropyToTeachers.apply(students, probabilities, self.student_temp)
        pairs = students.shape[0] * teachers.shape[0] - teachers.shape[0]  # same-view pairs skipped
        if self.training:
            self._update_center(teachers)
        return reduce(losses.sum(0) / pairs, self.reduction)

    @torch.no_grad()
    def _update_center(self, teachers: Tensor) -> None:
        """The running mean of the teacher's outputs over every rank's batch."""
        batch_sum, count = accumulation(teachers).sum((0, 1)), teachers.shape[0] * teachers.shape[1]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(batch_sum)
            count *= dist.get_world_size()
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)
