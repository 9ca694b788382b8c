"""`EpochLoader`: a torch DataLoader that keeps its own epoch count, for any training loop.

Each `iter()` is one epoch: the epoch number goes to the sampler (the shuffle order) and, where
the dataset has `set_epoch` (SSLViews), to the dataset (the augmentation draws), so epoch e is
the same whenever it runs. `state_dict()` holds the epoch and the batches of it already taken: a
loader given it continues with the next batch of the same order, so a run resumed from a
checkpoint taken inside an epoch sees exactly what the uninterrupted run saw. In a process group
(or with `rank`/`world_size` given) each rank takes its own shard of every epoch. Each worker's
native kernels use one thread, as torch's own do there: the workers already fill the cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from cxrfast import _C, process_group
from cxrfast.data.batch import collate


class _FromBatch(Sampler):
    """The epoch's order from the loader's current batch on (all of it on a fresh epoch)."""

    def __init__(self, order: DistributedSampler, owner: EpochLoader):
        self.order, self.owner = order, owner

    def __iter__(self):
        return iter(list(self.order)[self.owner.batch * self.owner.batch_size:])

    def __len__(self) -> int:
        return max(0, len(self.order) - self.owner.batch * self.owner.batch_size)


def one_native_thread(*_) -> None:
    """A worker initialiser (DataLoader's or a process pool's): one OpenMP thread per worker, so
    that workers side by side do not each start a pool over every core."""
    _C.set_num_threads(1)


class EpochLoader:
    def __init__(self, dataset: Dataset, batch_size: int, *, workers: int = 2, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True, rank: int | None = None, world_size: int | None = None):
        world_size = world_size if world_size is not None else process_group.world_size()
        rank = rank if rank is not None else process_group.rank()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.dataset, self.batch_size, self.epoch, self.batch = dataset, batch_size, 0, 0
        # One sampler for one rank or many: it shuffles by (seed, epoch) and shards when asked.
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                          drop_last=drop_last)
        # Its own generator for the workers' base seed: the global RNG stays the trainer's alone.
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=_FromBatch(self.sampler, self),
                                 num_workers=workers, drop_last=drop_last, persistent_workers=False,
                                 collate_fn=collate, worker_init_fn=one_native_thread,
                                 generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        """Batches in a whole epoch."""
        whole = len(self.sampler)
        return whole // self.batch_size if self.loader.drop_last else -(-whole // self.batch_size)

    def __iter__(self) -> Iterator:
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        for batch in self.loader:
            self.batch += 1
            yield batch
        self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state.get("batch", 0))
