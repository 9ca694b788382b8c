"""Labelled images as fine-tuning and the linear probe read them: the images of a prepared cache
or of a manifest CSV's files, and the `LabelTable` of the same rows (a cache's manifest.csv
carries its source manifest's label columns, and the `split` column when there was one)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from cxrfast.data.datasets import ImageFiles
from cxrfast.data.labels import LabelTable
from cxrfast.data.prepared_cache import MANIFEST_FILE, PreparedCache, is_prepared_cache
from cxrfast.data.sources import Source
from cxrfast.errors import ConfigError, DataError


@dataclass(frozen=True)
class LabelledImages:
    """`images` (a dataset of float32 (C, H, W) in [0, 1]) and their labels, one table row per
    image; `labels_file` is the CSV the labels came from, for error messages."""

    images: Dataset
    table: LabelTable
    labels_file: Path

    @classmethod
    def read(cls, source: str | os.PathLike, findings: list[str] | None = None, display: str | None = None):
        """The images and labels of a manifest CSV (paths relative to its folder) or a prepared
        cache (a CT cache of HU read through `display`); `findings` as `LabelTable.read_manifest`
        takes them."""
        root = Path(source)
        if is_prepared_cache(root):
            cache = PreparedCache(root, display)
            table = LabelTable.read_manifest(root / MANIFEST_FILE, findings, path_column="name")
            if len(table) != len(cache):
                raise DataError(f"{root / MANIFEST_FILE}: {len(table)} labelled rows for {len(cache)} cached images")
            return cls(cache, table, root / MANIFEST_FILE)
        if root.is_file() and root.suffix.lower() == ".csv":
            if display is not None:
                raise ConfigError(f"{root}: display {display} applies to a prepared CT cache of Hounsfield units, "
                                  "not to a manifest's images")
            table = LabelTable.read_manifest(root, findings)
            return cls(ImageFiles([Source(root.parent / path, path) for path in table.paths]), table, root)
        raise DataError(f"{root}: neither a labelled manifest .csv nor a prepared cache")

    @property
    def channels(self) -> int:
        return self.images.channels

    @property
    def findings(self) -> list[str]:
        return list(self.table.findings)
