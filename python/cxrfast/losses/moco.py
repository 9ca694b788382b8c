"""MoCo's InfoNCE against a queue of negative keys, over the fused log-sum-exp.

Logits per query are [q·k⁺, q·queueᵀ] / T with the positive at index 0 (MoCo v1/v2); the loss
is their cross-entropy. The queue is read before this batch's keys are enqueued, is owned by the
module, and is saved with its state dict (queue and write pointer). MoCo v3 multiplies the loss
by 2T (`scale_by_2t`). Queries and keys are normalised inside; keys carry no gradient.

In a process group every rank enqueues every rank's keys, in rank order (MoCo's
concat_all_gather), so the queues stay identical across ranks and equal to one process holding
the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cxrfast.losses.reduction import check_reduction, reduce
from cxrfast.ops.similarity import accumulation, similarity_lse


class MoCoLoss(nn.Module):
    def __init__(self, dim: int, temperature: float = 0.2, queue_size: int = 65536, scale_by_2t: bool = False,
                 reduction: str = "mean", seed: int = 0):
        super().__init__()
        if temperature <= 0 or queue_size <= 0 or dim <= 0:
            raise ValueError("dim, temperature and queue_size must be positive")
        self.temperature, self.scale_by_2t = temperature, scale_by_2t
        self.reduction = check_reduction(reduction)
        # MoCo starts from random unit keys: the first batches see noise, not zeros.
        queue = torch.randn(queue_size, dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("queue", F.normalize(queue, dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        if query.shape != key.shape or query.ndim != 2 or query.shape[1] != self.queue.shape[1]:
            raise ValueError(f"query and key must be (N, {self.queue.shape[1]}), not {tuple(query.shape)} and "
                             f"{tuple(key.shape)}")
        q = F.normalize(accumulation(query), dim=1)
        k = F.normalize(accumulation(key.detach()), dim=1)
        positive = (q * k).sum(1) / self.temperature
        # A copy: the op keeps the queue for backward, and _enqueue writes into it in place.
        negatives, _ = similarity_lse(q, self.queue.clone().to(q.dtype), 1.0 / self.temperature)
        losses = torch.logaddexp(negatives, positive) - positive
        if self.scale_by_2t:
            losses = losses * (2 * self.temperature)
        if self.training:
            self._enqueue(k)
        return reduce(losses, self.reduction)

    @torch.no_grad()
    def _enqueue(self, keys: Tensor) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, keys.contiguous())
            keys = torch.cat(gathered)
        size, n = self.queue.shape[0], keys.shape[0]
        kept = keys[-size:]  # a batch larger than the queue leaves only its newest keys
        rows = (self.queue_ptr + n - len(kept) + torch.arange(len(kept), device=keys.device)) % size
        self.queue[rows] = kept.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)
