"""`Batch`: what one training step of any method, or of fine-tuning, takes.

Views are a list, not a fixed pair, and may differ in size: SparK takes one, SimCLR and MoCo two,
DINO two global crops and several small local ones. The other fields are there for the runs that
need them (labels and which of them count, segmentation masks, report tokens, dataset indices)
and None elsewhere.

A dataset's item is a `Batch` without the batch dimension; `Batch.collate` stacks items into one
(the DataLoader's `collate_fn`), field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor
from torch.utils.data import default_collate


@dataclass
class Batch:
    views: list[Tensor]  # each (B, C, H_k, W_k) float in [0, 1]
    targets: Tensor | None = None  # (B, F) float labels
    known: Tensor | None = None  # (B, F) bool: the targets that count (uncertain ones left out)
    masks: Tensor | None = None  # (B, 1, H, W) segmentation masks
    tokens: Tensor | None = None  # (B, L) int64 report tokens
    index: Tensor | None = None  # (B,) int64 positions in the dataset

    def __post_init__(self) -> None:
        if not isinstance(self.views, list) or not self.views:
            raise ValueError(f"a batch holds a non-empty list of views, not {type(self.views).__name__}")

    def __len__(self) -> int:
        return self.views[0].shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        move = lambda x: None if x is None else x.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(self, views=[move(v) for v in self.views],
                       **{f.name: move(getattr(self, f.name)) for f in fields(self) if f.name != "views"})

    @staticmethod
    def collate(items: list[Batch]) -> Batch:
        """Items (no batch dimension) stacked into one batch; a field is None in all or none."""
        first = items[0]
        if any(len(item.views) != len(first.views) for item in items):
            raise ValueError("items of one batch must hold the same number of views")
        stacked = {}
        for f in fields(Batch):
            if f.name == "views":
                continue
            present = [getattr(item, f.name) is not None for item in items]
            if any(present) and not all(present):
                raise ValueError(f"{f.name} is given for some items of a batch and not for others")
            stacked[f.name] = torch.stack([torch.as_tensor(getattr(item, f.name)) for item in items]) \
                if all(present) else None
        views = [torch.stack([item.views[k] for item in items]) for k in range(len(first.views))]
        return Batch(views, **stacked)


def collate(items: list) -> Batch | object:
    """The DataLoader's collate_fn for any dataset: `Batch` items by `Batch.collate`, anything
    else by torch's default."""
    return Batch.collate(items) if isinstance(items[0], Batch) else default_collate(items)
