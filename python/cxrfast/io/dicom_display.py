"""Modality and display transforms of stored values (PS3.3 C.11), as plain numpy.

These functions are the reference: the fast paths evaluate them once over every possible stored
value and then map pixels through that table (`stage_lut`), so both paths share one definition.
"""

from __future__ import annotations

import numpy as np

from cxrfast.io.dicom_header import DicomInfo, LookupTable, Window


def apply_lut(values: np.ndarray, lut: LookupTable) -> np.ndarray:
    """Inputs below the first mapped value take the first entry, above the range the last."""
    index = np.clip(np.rint(values).astype(np.int64) - lut.first_mapped, 0, lut.data.size - 1)
    return lut.data[index].astype(np.float64)


def modality(stored: np.ndarray, info: DicomInfo) -> np.ndarray:
    """Stored -> modality values (float64): Modality LUT Sequence, else Rescale Slope/Intercept."""
    if info.modality_lut is not None:
        return apply_lut(stored, info.modality_lut)
    values = stored.astype(np.float64)
    if info.rescale is not None:
        values = values * info.rescale.slope + info.rescale.intercept
    return values


def window(values: np.ndarray, w: Window) -> np.ndarray:
    """VOI window to [0, 1] (PS3.3 C.11.2.1.2 with the output range normalised)."""
    c, width = w.center, w.width
    if w.function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"Window Width {width} must be > 0 for SIGMOID")
        return 1.0 / (1.0 + np.exp(-4.0 * (values - c) / width))
    if w.function == "LINEAR":
        if width < 1:
            raise ValueError(f"Window Width {width} must be >= 1 for LINEAR")
        c, width = c - 0.5, width - 1
    elif w.function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"Window Width {width} must be > 0 for LINEAR_EXACT")
    else:
        raise ValueError(f"unknown VOI LUT Function {w.function!r}")
    out = np.clip((values - c) / width + 0.5, 0.0, 1.0) if width > 0 else (values > c).astype(np.float64)
    out[values <= c - width / 2] = 0.0
    out[values > c + width / 2] = 1.0
    return out


def min_max(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """The documented fallback without a VOI: [low, high] (of non-padding pixels) to [0, 1]."""
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def display(modality_values: np.ndarray, info: DicomInfo, value_range: tuple[float, float] | None) -> np.ndarray:
    """Modality -> display values in [0, 1]: VOI LUT Sequence first, else the first window,
    else min-max over `value_range`; then inversion for MONOCHROME1 or an INVERSE shape."""
    if info.voi_lut is not None:
        out = apply_lut(modality_values, info.voi_lut) / float(2**info.voi_lut.bits - 1)
    elif info.window is not None:
        out = window(modality_values, info.window)
    else:
        if value_range is None:
            raise ValueError("min-max display needs the range of the non-padding modality values")
        out = min_max(modality_values, *value_range)
    return 1.0 - out if info.inverted else out


def padding_mask(stored: np.ndarray, info: DicomInfo) -> np.ndarray:
    """True where a stored value is padding (Pixel Padding Value / Range Limit)."""
    if info.padding is None:
        return np.zeros(stored.shape, dtype=bool)
    return (stored >= info.padding.low) & (stored <= info.padding.high)


def stored_domain(info: DicomInfo) -> np.ndarray:
    """Every value `bits_stored` bits can hold, in order: the index set of a stage table."""
    if info.is_signed:
        return np.arange(-(1 << (info.bits_stored - 1)), 1 << (info.bits_stored - 1), dtype=np.int64)
    return np.arange(0, 1 << info.bits_stored, dtype=np.int64)


def modality_range(low: int, high: int, info: DicomInfo) -> tuple[float, float]:
    """(min, max) of the modality values of the stored values [low, high], without enumerating
    them (32-bit stored values span 2^32): a LUT maps them to a contiguous run of its entries,
    a rescale is linear."""
    if high < low:
        return 0.0, 0.0
    if info.modality_lut is not None:
        lut = info.modality_lut
        first, last = np.clip(np.array([low, high], np.int64) - lut.first_mapped, 0, lut.data.size - 1)
        span = lut.data[first : last + 1].astype(np.float64)
    else:
        span = modality(np.array([low, high], np.int64), info)
    return float(span.min()), float(span.max())


def stage_values(stored: np.ndarray, info: DicomInfo, stage: str,
                 stored_range: tuple[int, int] | None = None) -> np.ndarray:
    """Stored values -> "modality" or "display" values (float64). Display needs `stored_range`,
    the (min, max) of non-padding stored values, when there is no VOI; padding displays as 0."""
    values = modality(stored, info)
    if stage == "modality":
        return values
    value_range = None
    if info.voi_lut is None and info.window is None and stored_range is not None:
        value_range = modality_range(stored_range[0], stored_range[1], info)
    out = display(values, info, value_range)
    out[padding_mask(stored, info)] = 0.0
    return out
