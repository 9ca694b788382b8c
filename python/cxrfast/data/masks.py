"""Segmentation masks beside their images, named in a manifest column (`lung_mask` for the
phantoms' lungs): one file, or several joined by "|" whose union is the mask (the left and right
lung of JSRT/SCR's GIFs or Montgomery's PNGs). Paths are relative to the manifest's folder; a
pixel is inside where the file's value is above 0.

A mask must have its image's size: every file's header is read, and every image's size, before
any training, and a mismatch is a `DataError` naming both files. A mask shrinks as its image was
shrunk into a prepared cache (area mean), then is cut at ½ so that it stays 0 or 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from cxrfast.data.area_resize import shrink
from cxrfast.data.labels.csv_rows import read_rows
from cxrfast.errors import DataError

SEPARATOR = "|"


def _size(path: Path) -> tuple[int, int]:
    """(rows, columns) from the file's header."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except OSError as e:
        raise DataError(f"{path}: not a readable mask image ({e})") from e


def read_mask(paths: Sequence[Path]) -> np.ndarray:
    """The union of the files' insides, bool (rows, columns)."""
    union = None
    for path in paths:
        try:
            with Image.open(path) as image:
                inside = np.asarray(image.convert("L")) > 0
        except OSError as e:
            raise DataError(f"{path}: not a readable mask image ({e})") from e
        if union is not None and inside.shape != union.shape:
            raise DataError(f"{path}: {inside.shape[0]}×{inside.shape[1]}, unlike the other files of its mask "
                            f"({union.shape[0]}×{union.shape[1]})")
        union = inside if union is None else union | inside
    return union


class MaskFiles(Dataset):
    """Item k: the mask of image k, float32 (1, H, W) of 0 and 1 at `shapes[k]`, the image's
    shape as the dataset gives it (a prepared cache's shrunk one)."""

    def __init__(self, files: Sequence[Sequence[Path]], shapes: Sequence[tuple[int, int]]):
        if len(files) != len(shapes):
            raise ValueError(f"{len(files)} masks for {len(shapes)} image shapes")
        self.files, self.shapes = [list(f) for f in files], [tuple(s) for s in shapes]

    @classmethod
    def from_manifest(cls, manifest: str | os.PathLike, column: str, image_sizes: Sequence[tuple[int, int]],
                      images: Sequence[str], shapes: Sequence[tuple[int, int]] | None = None) -> MaskFiles:
        """The masks `column` of `manifest` names, one per row in order, checked against the
        source images' (rows, columns) `image_sizes`; `shapes` are the sizes to give them (by
        default the source sizes)."""
        manifest = Path(manifest)
        files = []
        for k, (line, row) in enumerate(read_rows(manifest, (column,))):
            if not row[column]:
                raise DataError(f"{manifest}: line {line}: {column} is blank; every image needs its mask")
            paths = [manifest.parent / name.strip() for name in row[column].split(SEPARATOR)]
            for path in paths:
                if not path.is_file():
                    raise DataError(f"{manifest}: line {line}: mask {path} not found")
                size = _size(path)
                if k < len(image_sizes) and size != tuple(image_sizes[k]):
                    raise DataError(f"{path}: a {size[0]}×{size[1]} mask for the {image_sizes[k][0]}×"
                                    f"{image_sizes[k][1]} image {images[k]}; a mask must have its image's size")
            files.append(paths)
        if len(files) != len(image_sizes):
            raise DataError(f"{manifest}: {len(files)} masks for {len(image_sizes)} images")
        return cls(files, image_sizes if shapes is None else shapes)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        mask = read_mask(self.files[index]).astype(np.float32)
        shape = self.shapes[index]
        if mask.shape != shape:
            mask = (shrink(mask, shape) >= 0.5).astype(np.float32)
        return torch.from_numpy(mask)[None]
