"""Datasets a torch DataLoader can batch: images read from their files or from the prepared
cache, SSL views of them, and labelled views for fine-tuning.

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

from cxrfast.data.augment import Crops, ViewAugment, draw_crops, resize_center
from cxrfast.data.batch import Batch
from cxrfast.data.sources import Source, find_sources, load_image


class ImageFiles(Dataset):
    """Display values of the images under a folder or in a manifest, (1, rows, columns) float32
    in [0, 1], read on every access (the prepared cache reads each once instead)."""

    channels = 1

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
        image = self.images[index][None]
        views = draw_crops(image, self.crops, view_generator(self.seed, self.epoch, index))
        return Batch([view[0] for view in views], index=torch.tensor(index))


class RowViews(Dataset):
    """Image `rows[k]` of `images` as item k, for fine-tuning. With `augment`, its view is drawn
    from (seed, epoch, row), so an image gets the same view in a label-fraction subset as in the
    whole set; without, it is the centred view at `size`, as the evaluation sees it. Call
    `set_epoch` at each epoch (EpochLoader does)."""

    def __init__(self, images: Dataset, rows: Sequence[int] | np.ndarray, augment: ViewAugment | None,
                 size: int | tuple[int, int], seed: int):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and not 0 <= rows.min() <= rows.max() < len(images):
            raise ValueError(f"rows must index the {len(images)} images, not {rows.min()}..{rows.max()}")
        self.images, self.rows, self.augment, self.seed, self.epoch = images, rows, augment, seed, 0
        self.size = augment.size if augment is not None else size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def generator(self, row: int) -> torch.Generator:
        return view_generator(self.seed, self.epoch, row)


class LabelledViews(RowViews):
    """Item k: a `Batch` (no batch dimension) of one view of image `rows[k]`, `targets` (F,)
    float32 and `known` (F,) bool, its row of the arrays `LabelTable.targets` gives (unknown
    labels are not counted in the loss), and `index` the image's row."""

    def __init__(self, images: Dataset, targets: np.ndarray, known: np.ndarray, rows: Sequence[int] | np.ndarray,
                 *, augment: ViewAugment | None = None, size: int | tuple[int, int] = 224, seed: int = 0):
        if targets.shape != known.shape or targets.ndim != 2 or len(targets) != len(images):
            raise ValueError(f"targets {targets.shape} and known {known.shape} must both be (images, findings) "
                             f"for the {len(images)} images")
        super().__init__(images, rows, augment, size, seed)
        self.targets = torch.from_numpy(np.asarray(targets, np.float32))
        self.known = torch.from_numpy(np.asarray(known, bool))

    def __getitem__(self, index: int) -> Batch:
        row = int(self.rows[index])
        image = self.images[row][None]
        view = resize_center(image, self.size) if self.augment is None else self.augment(image, self.generator(row))
        return Batch([view[0]], targets=self.targets[row], known=self.known[row], index=torch.tensor(row))


class MaskedViews(RowViews):
    """Item k: a `Batch` of one view of image `rows[k]`, its segmentation mask (`masks[row]`,
    (1, H, W) of 0 and 1, the image's size) moved with it (`ViewAugment.with_masks`: the same
    crop, turn and flip, nearest; centred and nearest without `augment`) and `index`."""

    def __init__(self, images: Dataset, masks: Dataset, rows: Sequence[int] | np.ndarray, *,
                 augment: ViewAugment | None = None, size: int | tuple[int, int] = 224, seed: int = 0):
        if len(masks) != len(images):
            raise ValueError(f"{len(masks)} masks for {len(images)} images")
        super().__init__(images, rows, augment, size, seed)
        self.masks = masks

    def __getitem__(self, index: int) -> Batch:
        row = int(self.rows[index])
        image, mask = self.images[row][None], self.masks[row][None]
        if image.shape != mask.shape:
            raise ValueError(f"image {row}: mask {tuple(mask.shape[2:])} for an image of {tuple(image.shape[2:])}")
        if self.augment is None:
            view, moved = resize_center(image, self.size), resize_center(mask, self.size, nearest=True)
        else:
            view, moved = self.augment.with_masks(image, mask, self.generator(row))
        return Batch([view[0]], masks=moved[0], index=torch.tensor(row))


def view_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of item `index`'s views in `epoch`: the same whichever worker draws them."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)
