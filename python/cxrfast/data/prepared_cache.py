"""The prepared cache: every image of a dataset read once, shrunk, and stored as uint16 display
values in shards that training memory-maps.

Layout of a cache folder:
- `cache.json`: the format version and the settings it was prepared with;
- `shard-NNNNN.u16`: images back to back, row-major uint16 (display value × 65535);
- `shard-NNNNN.mask.u8`: with masks (`cache.json` names their column), each image's
  segmentation mask as uint8 0/1 at the same element offsets, written before the index;
- `shard-NNNNN.json`: that shard's index (name, offset, shape, metadata per image) and the
  images that could not be read, with the reason; written after its `.u16` and renamed into
  place, so a shard with a `.json` is complete;
- `manifest.csv`: every cached image in source order with its shard, offset, shape, header
  metadata and the columns of the source manifest (labels); written last, so a cache without
  one is unfinished;
- `errors.csv`: every unreadable image and why;
- `skipped.csv`: every CT slice the sampling left out and why (empty for radiographs).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cxrfast.errors import DataError

FORMAT_VERSION = 1
SETTINGS_FILE, MANIFEST_FILE, ERRORS_FILE, SKIPPED_FILE = "cache.json", "manifest.csv", "errors.csv", "skipped.csv"
PIXEL_DTYPE, MASK_DTYPE = np.uint16, np.uint8
PIXEL_SCALE = 65535.0
# Columns of the manifest that locate an image; the rest are metadata and labels.
LOCATION = ("name", "shard", "offset", "rows", "columns")


def is_prepared_cache(path: str | os.PathLike) -> bool:
    """Whether `path` is a cache folder (as opposed to a folder of images or a manifest)."""
    return (Path(path) / SETTINGS_FILE).is_file()


def shard_paths(root: Path, shard: int) -> tuple[Path, Path]:
    return root / f"shard-{shard:05d}.u16", root / f"shard-{shard:05d}.json"


def mask_path(root: Path, shard: int) -> Path:
    return root / f"shard-{shard:05d}.mask.u8"


class PreparedCache:
    """Read access to a prepared cache: `len(cache)`, `cache[i]` a float32 tensor (1, rows,
    columns) in [0, 1], `cache.pixels(i)` the stored uint16 view, `cache.records[i]` the
    manifest row (name, metadata, labels). Shards are memory-mapped on first use in each process
    (DataLoader workers map their own)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = self.root / MANIFEST_FILE
        if not (self.root / SETTINGS_FILE).is_file():
            raise DataError(f"{self.root}: not a prepared cache (no {SETTINGS_FILE})")
        if not manifest.is_file():
            raise DataError(f"{self.root}: unfinished cache (no {MANIFEST_FILE}); run `cxrfast prepare` again to "
                            "complete it")
        self.settings = json.loads((self.root / SETTINGS_FILE).read_text(encoding="utf-8"))
        with open(manifest, newline="", encoding="utf-8") as f:
            self.records = list(csv.DictReader(f))
        try:
            self._location = np.array([[int(r[k]) for k in LOCATION[1:]] for r in self.records],
                                      dtype=np.int64).reshape(-1, 4)
        except (KeyError, ValueError) as e:
            raise DataError(f"{manifest}: malformed location columns ({e})") from e
        self._shards: dict[tuple[int, str], np.memmap] = {}  # (shard, file suffix)

    def __len__(self) -> int:
        return len(self.records)

    def pixels(self, index: int) -> np.ndarray:
        return self._stored(index, ".u16", PIXEL_DTYPE)

    @property
    def masks_column(self) -> str | None:
        """The manifest column whose masks were cached with the images, if any."""
        return self.settings.get("masks")

    def mask(self, index: int) -> torch.Tensor:
        """Image `index`'s segmentation mask, float32 (1, rows, columns) of 0 and 1."""
        if self.masks_column is None:
            raise DataError(f"{self.root}: prepared without masks (cxrfast prepare --masks COLUMN)")
        return torch.from_numpy(self._stored(index, ".mask.u8", MASK_DTYPE).astype(np.float32))[None]

    def _stored(self, index: int, suffix: str, dtype) -> np.ndarray:
        shard, offset, rows, columns = (int(v) for v in self._location[index])
        data = self._shards.get((shard, suffix))
        if data is None:
            path = self.root / f"shard-{shard:05d}{suffix}"
            data = self._shards[(shard, suffix)] = np.memmap(path, dtype=dtype, mode="r")
        if offset + rows * columns > data.size:
            raise DataError(f"{self.root}: image {self.records[index]['name']} lies past the end of shard {shard}")
        return data[offset:offset + rows * columns].reshape(rows, columns)

    def __getitem__(self, index: int) -> torch.Tensor:
        values = torch.from_numpy(self.pixels(index).astype(np.float32))
        return values.div_(PIXEL_SCALE)[None]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_shards": {}}  # maps are per process


class CachedMasks(Dataset):
    """The masks of a prepared cache as a dataset: item k is `cache.mask(k)`."""

    def __init__(self, cache: PreparedCache):
        if cache.masks_column is None:
            raise DataError(f"{cache.root}: prepared without masks (cxrfast prepare --masks COLUMN)")
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.cache.mask(index)
