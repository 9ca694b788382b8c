"""The naive losses, the oracles the fused ones are tested and benchmarked against: each builds
the whole logit matrix (or loops over DINO's crop pairs) as the reference code of lightly,
solo-learn, open_clip, MoCo and DINO computes it, and lets autograd keep it for backward. Memory
grows with N², so they serve checks and baselines, not training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def naive_nt_xent(out0: Tensor, out1: Tensor, temperature: float, reduction: str = "mean") -> Tensor:
    """SimCLR's NT-Xent over 2N rows: self-similarity left out, the other view the positive."""
    z = F.normalize(torch.cat([out0, out1]).float(), dim=1)
    n = out0.shape[0]
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = (z @ z.t() / temperature).masked_fill(self_pairs, float("-inf"))
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, labels, reduction=reduction)


def naive_multi_positive(z: Tensor, indexes: Tensor, temperature: float) -> Tensor:
    """solo-learn's manual_ntxent_loss: similarities exponentiated, summed over the positives (rows
    of the same index) and over every other row."""
    z = F.normalize(z.float(), dim=-1)
    sim = torch.exp(z @ z.t() / temperature)
    same = indexes[:, None] == indexes[None, :]
    pos_mask = same.clone().fill_diagonal_(False)
    pos, neg = (sim * pos_mask).sum(1), (sim * ~same).sum(1)
    return -torch.mean(torch.log(pos / (pos + neg)))


def naive_clip(image: Tensor, text: Tensor, scale: Tensor | float, labels: Tensor, reduction: str = "mean",
               bias: Tensor | float = 0.0) -> Tensor:
    """CLIP: the mean of the image-to-text and text-to-image cross-entropies."""
    logits = scale * image.float() @ text.float().t() + bias
    return (F.cross_entropy(logits, labels, reduction=reduction)
            + F.cross_entropy(logits.t(), labels, reduction=reduction)) / 2


def naive_siglip(image: Tensor, text: Tensor, scale: Tensor | float, bias: Tensor | float, labels: Tensor,
                 reduction: str = "mean") -> Tensor:
    """open_clip's SigLipLoss: ±1 labels, −Σ log σ over every pair, divided by the image count."""
    logits = scale * image.float() @ text.float().t() + bias
    signs = -torch.ones_like(logits)
    signs[torch.arange(len(labels), device=logits.device), labels] = 1.0
    per_image = -F.logsigmoid(signs * logits).sum(1)
    return {"mean": per_image.sum() / len(image), "sum": per_image.sum(), "none": per_image}[reduction]


def naive_moco(query: Tensor, key: Tensor, queue: Tensor, temperature: float, reduction: str = "mean") -> Tensor:
    """MoCo: logits [q·k⁺, q·queueᵀ] / T, the positive at index 0."""
    q, k = F.normalize(query.float(), dim=1), F.normalize(key.float(), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device), reduction=reduction)


def naive_dino(student: Tensor, teacher: Tensor, center: Tensor, crops: int, student_temp: float,
               teacher_temp: float, reduction: str = "mean") -> Tensor:
    """DINO: one log-softmax and one product per (teacher, student) crop pair, same views skipped;
    the teacher centred and sharpened, 2 global crops of teacher outputs."""
    students = (student.float() / student_temp).chunk(crops)
    teachers = F.softmax((teacher.float() - center) / teacher_temp, dim=-1).detach().chunk(2)
    total, terms = 0, 0
    for iq, q in enumerate(teachers):
        for v, s in enumerate(students):
            if v == iq:
                continue
            total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1)
            terms += 1
    per_sample = total / terms
    return {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]


def naive_center(center: Tensor, teacher: Tensor, momentum: float) -> Tensor:
    """DINO's centre update: a running mean of the teacher's outputs."""
    return center * momentum + teacher.float().mean(0, keepdim=True) * (1 - momentum)
