"""Write grayscale images as 8- or 16-bit PNG files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

# Pillow stores uint8 as mode "L" and uint16 as "I;16", i.e. 8- and 16-bit grayscale PNG.
_DTYPES = {8: np.uint8, 16: np.uint16}


def write_png(path: str | os.PathLike, image: np.ndarray, bits: int = 8) -> Path:
    """Write a (rows, columns) image as a `bits`-deep grayscale PNG and return the path.

    Floating-point images hold values in [0, 1], scaled to the full `bits` range and
    rounded; integer images are written as they are and must fit in `bits` bits.
    """
    if bits not in _DTYPES:
        raise ValueError(f"bits must be 8 or 16, not {bits}")
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty (rows, columns) array, not shape {image.shape}")
    top = (1 << bits) - 1
    if image.dtype.kind == "f":
        if not np.all((image >= 0) & (image <= 1)):  # NaN fails too
            raise ValueError("a floating-point image must have every value in [0, 1]")
        values = np.rint(image * top)
    elif image.dtype.kind in "iu":
        if image.min() < 0 or image.max() > top:
            raise ValueError(f"integer values [{image.min()}, {image.max()}] do not fit {bits} bits [0, {top}]")
        values = image
    else:
        raise ValueError(f"image must be floating point or integer, not dtype {image.dtype}")
    Image.fromarray(values.astype(_DTYPES[bits])).save(path, format="PNG")
    return Path(path)
