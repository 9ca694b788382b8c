"""Segmentation masks beside their images, named in a manifest column (`lung_mask` for the
phantoms' lungs): one file, or several joined by "|" whose union is the mask (the left and right
lung of JSRT/SCR's GIFs or Montgomery's PNGs). Paths are relative to the manifest's folder; a
pixel is inside where the file's value is above 0.

A mask has its image's size, or that size divided by one whole factor on both axes: a mask
drawn at a lower resolution than its film (SCR's 1024² masks of JSRT's 2048² images), which is
scaled up by repeating each of its pixels factor × factor times, the area it was drawn over. Every
file's header is read, and every image's size, before any training, and any other size is a
`DataError` naming both files. A mask shrinks as its image was shrunk into a prepared cache (area
mean), then is cut at ½ so that it stays 0 or 1.
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


def _factor(mask: tuple[int, int], image: tuple[int, int]) -> int | None:
    """The whole factor by which `image` (rows, columns) is larger than `mask` on both axes, or None."""
    (rows, columns), (image_rows, image_columns) = mask, image
    if rows <= 0 or columns <= 0 or image_rows % rows or image_columns % columns:
        return None
    factor = image_rows // rows
    return factor if image_columns // columns == factor else None


def check_mask_size(mask: tuple[int, int], image: tuple[int, int], what: str, image_name: str) -> None:
    """A `DataError` naming the mask (`what`) and its image unless the mask's size fits the image's."""
    if _factor(tuple(mask), tuple(image)) is None:
        raise DataError(f"{what}: a {mask[0]}×{mask[1]} mask for the {image[0]}×{image[1]} image {image_name}; "
                        "a mask must have its image's size or that size divided by a whole factor")


def fit_mask(inside: np.ndarray, image: tuple[int, int], what: str, image_name: str) -> np.ndarray:
    """`inside` (bool) at the image's (rows, columns), its pixels repeated if drawn smaller."""
    check_mask_size(inside.shape, image, what, image_name)
    factor = _factor(inside.shape, tuple(image))
    return inside if factor == 1 else np.repeat(np.repeat(inside, factor, axis=0), factor, axis=1)


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
    shape as the dataset gives it (a prepared cache's shrunk one), from its source image's
    `image_sizes[k]`."""

    def __init__(self, files: Sequence[Sequence[Path]], image_sizes: Sequence[tuple[int, int]],
                 shapes: Sequence[tuple[int, int]] | None = None):
        shapes = image_sizes if shapes is None else shapes
        if not len(files) == len(image_sizes) == len(shapes):
            raise ValueError(f"{len(files)} masks for {len(image_sizes)} images and {len(shapes)} shapes")
        self.files = [list(f) for f in files]
        self.image_sizes, self.shapes = [tuple(s) for s in image_sizes], [tuple(s) for s in shapes]

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
                if k < len(image_sizes):
                    check_mask_size(_size(path), image_sizes[k], str(path), images[k])
            files.append(paths)
        if len(files) != len(image_sizes):
            raise DataError(f"{manifest}: {len(files)} masks for {len(image_sizes)} images")
        return cls(files, image_sizes, shapes)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        files = self.files[index]
        mask = fit_mask(read_mask(files), self.image_sizes[index], SEPARATOR.join(map(str, files)),
                        f"of row {index}").astype(np.float32)
        shape = self.shapes[index]
        if mask.shape != shape:
            mask = (shrink(mask, shape) >= 0.5).astype(np.float32)
        return torch.from_numpy(mask)[None]
