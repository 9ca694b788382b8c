"""pydicom as the independent reference for the display stage of cxrfast's reader."""

from __future__ import annotations

import numpy as np
from pydicom.pixels import apply_modality_lut, apply_voi_lut


def padding(ds, stored: np.ndarray) -> np.ndarray:
    if "PixelPaddingValue" not in ds:
        return np.zeros(stored.shape, bool)
    limits = [ds.PixelPaddingValue, ds.get("PixelPaddingRangeLimit", ds.PixelPaddingValue)]
    return (stored >= min(limits)) & (stored <= max(limits))


def display(ds, stored: np.ndarray) -> np.ndarray:
    """pydicom's VOI output scaled to [0, 1] by the output range pydicom documents, inverted
    for MONOCHROME1 or an INVERSE Presentation LUT Shape; min-max of the modality values where
    the file has no VOI. cxrfast's deliberate difference: padding pixels are left out of min-max
    and display as 0."""
    pad = padding(ds, stored)
    modality = apply_modality_lut(stored, ds).astype(np.float64)
    voi = apply_voi_lut(modality, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        out = voi / (2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    elif "WindowCenter" in ds:
        if "ModalityLUTSequence" in ds:
            y_min, y_max = 0.0, 2.0 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
        elif ds.PixelRepresentation == 0:
            y_min, y_max = 0.0, 2.0**ds.BitsStored - 1
        else:
            y_min, y_max = -(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1
        if "RescaleSlope" in ds and "RescaleIntercept" in ds:
            y_min = y_min * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            y_max = y_max * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        out = (voi - y_min) / (y_max - y_min)
    else:
        kept = modality[~pad]
        out = (modality - kept.min()) / max(np.ptp(kept), 1e-300)
    if ds.PhotometricInterpretation == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE":
        out = 1.0 - out
    out[pad] = 0.0
    return out
