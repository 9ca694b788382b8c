"""The prepared cache: every image of a dataset read once, shrunk, and stored as uint16 display
values (or, for CT in Hounsfield units, int16) in shards that training memory-maps.

Layout of a cache folder:
- `cache.json`: the format version and the settings it was prepared with;
- `shard-NNNNN.u16`: images back to back, channels then rows, row-major uint16 (display value ×
  65535); a CT cache of Hounsfield units has `shard-NNNNN.i16` instead, int16 HU;
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

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from cxrfast.data.ct_display import HU_RANGE, CTDisplay
from cxrfast.errors import ConfigError, DataError

# 2: several channels, or int16 HU. One channel of display values is written as 1, which every
# version reads.
FORMAT_VERSION = 2
SETTINGS_FILE, MANIFEST_FILE, ERRORS_FILE, SKIPPED_FILE = "cache.json", "manifest.csv", "errors.csv", "skipped.csv"
PIXEL_DTYPE, MASK_DTYPE = np.uint16, np.uint8
PIXEL_SCALE = 65535.0
# Columns of the manifest that locate an image; the rest are metadata and labels.
LOCATION = ("name", "shard", "offset", "rows", "columns")


def is_prepared_cache(path: str | os.PathLike) -> bool:
    """Whether `path` is a cache folder (as opposed to a folder of images or a manifest)."""
    return (Path(path) / SETTINGS_FILE).is_file()


@dataclass(frozen=True)
class PixelEncoding:
    """How a cache stores an image: `channels` planes of display values in [0, 1] as uint16 × 65535,
    or (`hounsfield`) of int16 Hounsfield units."""

    channels: int = 1
    hounsfield: bool = False

    @classmethod
    def of(cls, settings: dict) -> PixelEncoding:
        """The encoding a cache's settings imply: its CT display policy's, else one display channel."""
        ct = settings.get("ct")
        if ct is None:
            return cls()
        display = CTDisplay.parse(ct["display"])
        return cls(display.channels, display.kind == "hu")

    @property
    def dtype(self) -> type:
        return np.int16 if self.hounsfield else PIXEL_DTYPE

    @property
    def suffix(self) -> str:
        return ".i16" if self.hounsfield else ".u16"

    @property
    def format(self) -> int:
        return 1 if self == PixelEncoding() else FORMAT_VERSION

    def encode(self, values: np.ndarray) -> np.ndarray:
        """float32 (channels, rows, columns) display values or HU -> what the shard stores."""
        if self.hounsfield:
            return np.clip(np.rint(values), *HU_RANGE).astype(np.int16)
        return np.rint(np.clip(values, 0.0, 1.0) * PIXEL_SCALE).astype(PIXEL_DTYPE)


def shard_paths(root: Path, shard: int, encoding: PixelEncoding = PixelEncoding()) -> tuple[Path, Path]:
    return root / f"shard-{shard:05d}{encoding.suffix}", root / f"shard-{shard:05d}.json"


def mask_path(root: Path, shard: int) -> Path:
    return root / f"shard-{shard:05d}.mask.u8"


class PreparedCache:
    """Read access to a prepared cache: `len(cache)`, `cache[i]` a float32 tensor (channels, rows,
    columns) in [0, 1], `cache.pixels(i)` the stored (channels, rows, columns) view,
    `cache.records[i]` the manifest row (name, metadata, labels). Shards are memory-mapped on
    first use in each process (DataLoader workers map their own).

    A cache of Hounsfield units (`prepare --ct hu`) is read through a `display` policy given here
    (one window, several as channels, or min_max of each slice), so one cache serves every
    windowing a study tries; a cache of display values holds its policy already, and a `display`
    given for it must be that one."""

    def __init__(self, root: str | os.PathLike, display: CTDisplay | str | None = None):
        self.root = Path(root)
        manifest = self.root / MANIFEST_FILE
        if not (self.root / SETTINGS_FILE).is_file():
            raise DataError(f"{self.root}: not a prepared cache (no {SETTINGS_FILE})")
        if not manifest.is_file():
            raise DataError(f"{self.root}: unfinished cache (no {MANIFEST_FILE}); run `cxrfast prepare` again to "
                            "complete it")
        self.settings = json.loads((self.root / SETTINGS_FILE).read_text(encoding="utf-8"))
        if self.settings.get("format", 1) > FORMAT_VERSION:
            raise DataError(f"{self.root}: cache format {self.settings['format']} is newer than this cxrfast reads "
                            f"({FORMAT_VERSION}); upgrade cxrfast")
        self.encoding = PixelEncoding.of(self.settings)
        self.display = self._read_through(display)
        with open(manifest, newline="", encoding="utf-8") as f:
            self.records = list(csv.DictReader(f))
        try:
            self._location = np.array([[int(r[k]) for k in LOCATION[1:]] for r in self.records],
                                      dtype=np.int64).reshape(-1, 4)
        except (KeyError, ValueError) as e:
            raise DataError(f"{manifest}: malformed location columns ({e})") from e
        self._shards: dict[tuple[int, str], np.memmap] = {}  # (shard, file suffix)
        self._windows: np.ndarray | None = None  # (channels, 65536) display values of each HU

    def _read_through(self, display: CTDisplay | str | None) -> CTDisplay | None:
        """The policy that turns stored HU into inputs; None for a cache of display values."""
        display = CTDisplay.parse(display) if isinstance(display, str) else display
        if not self.encoding.hounsfield:
            held = self.settings.get("ct", {}).get("display")
            if display is not None and str(display) != held:
                raise ConfigError(f"{self.root}: holds {'the display values of ' + held if held else 'display values'}"
                                  f"; display {display} applies to a cache of Hounsfield units (prepare --ct hu)")
            return None
        if display is None or display.kind == "hu":
            raise ConfigError(f"{self.root}: a cache of Hounsfield units; choose how to show them to the network "
                              "(--display lung, lung+mediastinum+bone, min_max...)")
        return display

    def __len__(self) -> int:
        return len(self.records)

    @property
    def channels(self) -> int:
        """The channels of `cache[i]`."""
        return self.encoding.channels if self.display is None else self.display.channels

    def pixels(self, index: int) -> np.ndarray:
        return self._stored(index, self.encoding.suffix, self.encoding.dtype, self.encoding.channels)

    @property
    def masks_column(self) -> str | None:
        """The manifest column whose masks were cached with the images, if any."""
        return self.settings.get("masks")

    def mask(self, index: int) -> torch.Tensor:
        """Image `index`'s segmentation mask, float32 (1, rows, columns) of 0 and 1."""
        if self.masks_column is None:
            raise DataError(f"{self.root}: prepared without masks (cxrfast prepare --masks COLUMN)")
        return torch.from_numpy(self._stored(index, ".mask.u8", MASK_DTYPE, 1).astype(np.float32))

    def _stored(self, index: int, suffix: str, dtype, channels: int) -> np.ndarray:
        shard, offset, rows, columns = (int(v) for v in self._location[index])
        data = self._shards.get((shard, suffix))
        if data is None:
            path = self.root / f"shard-{shard:05d}{suffix}"
            data = self._shards[(shard, suffix)] = np.memmap(path, dtype=dtype, mode="r")
        if offset + channels * rows * columns > data.size:
            raise DataError(f"{self.root}: image {self.records[index]['name']} lies past the end of shard {shard}")
        return data[offset:offset + channels * rows * columns].reshape(channels, rows, columns)

    def __getitem__(self, index: int) -> torch.Tensor:
        stored = self.pixels(index)
        if self.display is None:
            return torch.from_numpy(stored.astype(np.float32)).div_(PIXEL_SCALE)
        if self.display.kind == "min_max":  # each slice's own range
            return torch.from_numpy(self.display.apply(stored[0]))
        if self._windows is None:  # the windows of every int16 value: one lookup per pixel
            self._windows = self.display.apply(np.arange(HU_RANGE[0], HU_RANGE[1] + 1))
        return torch.from_numpy(self._windows[:, stored[0].astype(np.int32) - HU_RANGE[0]])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_shards": {}, "_windows": None}  # maps and tables are per process


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
