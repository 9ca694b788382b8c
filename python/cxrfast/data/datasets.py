"""Datasets a torch DataLoader can batch: images read from their files or from the prepared
cache, and SSL views of them.

Views are drawn in the loader's workers, one image at a time (images differ in size until they
are cropped), each from a generator seeded by (seed, epoch, index): the same epoch gives the same
views whatever the worker count or order, so a resumed run sees what an uninterrupted one would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cxrfast.data.augment import Crops, draw_crops
from cxrfast.data.batch import Batch
from cxrfast.data.sources import Source, find_sources, load_image


class ImageFiles(Dataset):
    """Display values of the images under a folder or in a manifest, (1, rows, columns) float32
    in [0, 1], read on every access (the prepared cache reads each once instead)."""

    def __init__(self, sources: str | os.PathLike | Sequence[Source]):
        self.sources = find_sources(sources) if isinstance(sources, (str, os.PathLike)) else list(sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Tensor:
        return torch.from_numpy(load_image(self.sources[index].path).pixels)[None]


class SSLViews(Dataset):
    """The views `crops` ask for of each image of `images` (any dataset of (1, H, W) tensors):
    item i is a `Batch` (no batch dimension) of (1, *augment.size) views, for `Batch.collate`.
    Call `set_epoch` at each epoch."""

    def __init__(self, images: Dataset, crops: Sequence[Crops], seed: int = 0):
        if not crops or not all(isinstance(c, Crops) for c in crops):
            raise ValueError(f"crops must be a non-empty list of Crops, not {crops!r}")
        self.images, self.crops, self.seed = images, list(crops), seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Batch:
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state) >> 1)
        image = self.images[index][None]
        return Batch([view[0] for view in draw_crops(image, self.crops, generator)], index=torch.tensor(index))
