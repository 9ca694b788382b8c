"""`EpochLoader`: a torch DataLoader that keeps its own epoch count, for any training loop.

Each `iter()` is one epoch: the epoch number goes to the sampler (the shuffle order) and, where
the dataset has `set_epoch` (SSLViews), to the dataset (the augmentation draws), so epoch e is
the same whenever it runs, and a run resumed from `state_dict()` continues the same sequence. In
a process group (or with `rank`/`world_size` given) each rank takes its own shard of every epoch.
An epoch counts once its iteration is exhausted: a run resumed from a checkpoint taken inside an
epoch repeats that epoch from its start.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class EpochLoader:
    def __init__(self, dataset: Dataset, batch_size: int, *, workers: int = 2, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True, rank: int | None = None, world_size: int | None = None):
        grouped = dist.is_available() and dist.is_initialized()
        world_size = world_size if world_size is not None else (dist.get_world_size() if grouped else 1)
        rank = rank if rank is not None else (dist.get_rank() if grouped else 0)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.dataset, self.epoch = dataset, 0
        # One sampler for one rank or many: it shuffles by (seed, epoch) and shards when asked.
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                          drop_last=drop_last)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 drop_last=drop_last, persistent_workers=False)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        yield from self.loader
        self.epoch += 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
