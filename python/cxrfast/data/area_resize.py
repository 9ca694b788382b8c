"""Shrinking a radiograph by area averaging: each output pixel is the mean of the input area it
covers, exact for any ratio (Pillow's box filter on float32). Interpolating filters alias the
fine texture of a 2500-pixel film when it drops to a few hundred pixels; the area mean does not."""

from __future__ import annotations

import numpy as np
from PIL import Image


def shorter_side_shape(rows: int, columns: int, size: int) -> tuple[int, int]:
    """(rows, columns) with the shorter side `size` and the aspect kept; never larger than given."""
    scale = min(1.0, size / min(rows, columns))
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def shrink(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float32 (rows, columns) -> float32 `shape` by area averaging."""
    if tuple(shape) == pixels.shape:
        return pixels.astype(np.float32, copy=False)
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BOX), dtype=np.float32)
