"""Images with their reports as captioning trains on them: one view of each image and its report's
tokens, the report's left and right swapped when the view is mirrored.

Reports come from the `report` column of the images' manifest (a prepared cache's, or the
manifest CSV an image folder was listed by); an image without one is an error that names it,
never an empty caption.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from cxrfast.data.augment import ViewAugment
from cxrfast.data.batch import Batch
from cxrfast.data.datasets import view_generator
from cxrfast.data.report_laterality import swap_laterality
from cxrfast.data.report_tokenizer import ReportTokenizer
from cxrfast.data.reports import REPORT_COLUMN
from cxrfast.errors import DataError


def manifest_rows(images: Dataset) -> tuple[list[dict], list[str]]:
    """Each image's manifest row and name, in order, for a prepared cache or `ImageFiles`."""
    if hasattr(images, "records"):
        return images.records, [row["name"] for row in images.records]
    sources = getattr(images, "sources", [])
    return [source.columns for source in sources], [source.name for source in sources]


def image_reports(images: Dataset) -> list[str]:
    """The report of every image of a prepared cache or of `ImageFiles`, in order."""
    rows, names = manifest_rows(images)
    if len(rows) != len(images):
        raise DataError(f"{type(images).__name__}: no manifest rows to take the reports from; give a prepared cache "
                        f"or a manifest CSV with a {REPORT_COLUMN!r} column")
    missing = [name for row, name in zip(rows, names) if not (row.get(REPORT_COLUMN) or "").strip()]
    if missing:
        raise DataError(f"{len(missing)} images have no {REPORT_COLUMN!r}, the first {missing[0]}; captioning needs "
                        "each image's report (cxrfast manifest mimic-reports attaches MIMIC-CXR's)")
    return [row[REPORT_COLUMN].strip() for row in rows]


class CaptionViews(Dataset):
    """Item i: a `Batch` of image i's view and its report's tokens (`max_length`, padded), for
    `Batch.collate`. Call `set_epoch` at each epoch."""

    def __init__(self, images: Dataset, reports: list[str], tokenizer: ReportTokenizer, augment: ViewAugment,
                 max_length: int, seed: int = 0):
        if len(reports) != len(images):
            raise ValueError(f"{len(reports)} reports for {len(images)} images")
        self.images, self.reports, self.tokenizer, self.augment = images, reports, tokenizer, augment
        self.max_length, self.seed, self.epoch = max_length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Batch:
        view, flipped = self.augment.with_flips(self.images[index][None], view_generator(self.seed, self.epoch, index))
        report = swap_laterality(self.reports[index]) if bool(flipped[0]) else self.reports[index]
        tokens = torch.zeros(self.max_length, dtype=torch.long)  # [PAD]: id 0
        caption = self.tokenizer.encode([report], self.max_length)[0][0]
        tokens[:len(caption)] = caption
        return Batch([view[0]], tokens=tokens, index=torch.tensor(index))
