"""`read_dicom`: stored, modality or display pixels of a DICOM file, fast and checked.

Fast paths: native Pixel Data of a file is read straight into its destination with `pread`
and fixed up (or mapped through the stage table) chunk by chunk while in cache; everything
else decodes stored values first and maps them through the same table.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace

import numpy as np

from cxrfast import _C
from cxrfast.errors import DicomError
from cxrfast.io import dicom_display
from cxrfast.io.dicom_header import MONOCHROME, DicomInfo, ParsedFile, read_parsed
from cxrfast.io.dicom_pixels import (check_native_length, decode_stored, frame_values, native_frame_bytes, pixel_format,
                                     stored_dtype, swapped_ow)

STAGES = ("stored", "modality", "display")
# Stored values are decoded for these; the modality and display stages need monochrome.
SUPPORTED_PHOTOMETRIC = MONOCHROME + ("RGB",)
_MAX_TABLE_BITS = 16  # a stage table over 2^16 float32 entries stays in L2


@dataclass(frozen=True)
class DicomImage:
    """`pixels`: (rows, columns) for one frame, (frames, rows, columns) for several, with a
    trailing samples axis for RGB. Stored values keep their integer type; the modality stage is
    float32; the display stage is float32 in [0, 1]."""

    pixels: np.ndarray
    info: DicomInfo
    stage: str
    frame: int | None = None


def read_dicom(source: str | os.PathLike | bytes | bytearray | memoryview, *, frame: int | None = None,
               stage: str = "display") -> DicomImage:
    """Read the pixels of a DICOM file (a path or its bytes) at a pipeline stage.

    stage="stored": raw stored values, masked to Bits Stored or sign-extended at High Bit.
    stage="modality": float32 after the Modality LUT Sequence or Rescale Slope/Intercept.
    stage="display": float32 in [0, 1] after the VOI LUT Sequence, else the first Window
    Center/Width (LINEAR, LINEAR_EXACT or SIGMOID), else min-max of the non-padding pixels;
    MONOCHROME1 or Presentation LUT Shape INVERSE inverted; padding pixels 0.

    Raises DicomError naming the source and the problem for anything it cannot read.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    is_path = not isinstance(source, (bytes, bytearray, memoryview))
    parsed = read_parsed(source, header_only=is_path)
    if not parsed.table["has_pixel_data"]:
        raise parsed.fail("no Pixel Data (7FE0,0010): not an image")
    info = parsed.info()
    _check_photometric(parsed, info, stage)
    first, count = _frames(info, frame)
    direct = (is_path and not parsed.table["encapsulated"] and not parsed.table["deflated"]
              and info.bits_allocated > 1 and not swapped_ow(parsed, info))
    shape = _shape(info, frame, count)

    table = None
    needs_range = stage == "display" and info.voi_lut is None and info.window is None
    if stage != "stored" and info.bits_stored <= _MAX_TABLE_BITS and not needs_range:
        table = _stage_table(parsed, info, stage, None)
        if direct:  # one pass: file -> display values
            out = np.empty(shape, np.float32)
            _read_file(parsed, info, first, count, out, table)
            return DicomImage(out, info, stage, frame)

    if direct:
        stored = np.empty(shape, stored_dtype(info))
        _read_file(parsed, info, first, count, stored, None)
    else:
        if is_path:  # the header-only parse holds a prefix of the file: decoding needs all of it
            parsed = read_parsed(source, header_only=False)
        stored = decode_stored(parsed, info, first, count).reshape(shape)
    if stage == "stored":
        return DicomImage(stored, info, stage, frame)

    stored_range = None
    if needs_range:
        pad = info.padding
        # Clamped to int64 (a UV or FD padding value may lie past it): stored values are at most 32 bits.
        pad_low, pad_high = (max(min(v, 2**63 - 1), -2**63) for v in ((pad.low, pad.high) if pad else (1, 0)))
        low, high, kept = _C.stored_range(stored, 0, stored.size, pixel_format(info, clean=True), pad_low, pad_high)
        stored_range = (low, high) if kept else (0, -1)
    if info.bits_stored > _MAX_TABLE_BITS:
        values = _stage_values(parsed, stored.astype(np.int64), info, stage, stored_range)
        return DicomImage(values.astype(np.float32), info, stage, frame)
    if table is None:
        table = _stage_table(parsed, info, stage, stored_range)
    out = np.empty(shape, np.float32)
    _C.map_stored(stored, 0, out, stored.size, pixel_format(info, clean=True), table[0], table[1])
    return DicomImage(out, info, stage, frame)


def _check_photometric(parsed: ParsedFile, info: DicomInfo, stage: str) -> None:
    pi = info.photometric_interpretation
    if pi not in SUPPORTED_PHOTOMETRIC:
        raise parsed.fail(f"unsupported Photometric Interpretation {pi}: cxrfast reads "
                          f"{', '.join(SUPPORTED_PHOTOMETRIC)}")
    if stage != "stored" and pi not in MONOCHROME:
        raise parsed.fail(f"the {stage} stage needs MONOCHROME1 or MONOCHROME2, not {pi}; use stage='stored'")
    if (info.samples_per_pixel == 1) != (pi in MONOCHROME):
        raise parsed.fail(f"Samples per Pixel {info.samples_per_pixel} contradicts Photometric Interpretation {pi}")


def _frames(info: DicomInfo, frame: int | None) -> tuple[int, int]:
    if frame is None:
        return 0, info.frames
    if not isinstance(frame, (int, np.integer)) or not 0 <= frame < info.frames:
        raise IndexError(f"frame {frame!r} is outside the {info.frames} frame(s) of this file")
    return int(frame), 1


def _shape(info: DicomInfo, frame: int | None, count: int) -> tuple[int, ...]:
    shape = (info.rows, info.columns) + ((info.samples_per_pixel,) if info.samples_per_pixel > 1 else ())
    return shape if frame is not None or count == 1 else (count,) + shape


def _stage_values(parsed, stored, info, stage, stored_range) -> np.ndarray:
    try:
        return dicom_display.stage_values(stored, info, stage, stored_range)
    except ValueError as e:  # a window the standard forbids, an unknown VOI LUT Function
        raise parsed.fail(str(e)) from None


# Header fields that do not change a stage table: blanked so files of one series share a table.
_NOT_IN_TABLE = dict(rows=1, columns=1, frames=1, transfer_syntax="", modality=None, view_position=None,
                     patient_id=None, study_instance_uid=None, series_instance_uid=None, sop_instance_uid=None,
                     geometry=None, frame_geometry=())


def table_key(info: DicomInfo) -> DicomInfo | None:
    """`info` with the fields no stage table depends on blanked, so the files of a series share
    their tables; None with a LUT Sequence, whose array cannot be a cache key."""
    if info.modality_lut is not None or info.voi_lut is not None:
        return None
    return replace(info, **_NOT_IN_TABLE)


def _stage_table(parsed, info, stage, stored_range) -> tuple[np.ndarray, int]:
    """The stage evaluated over every stored value: (read-only float32 table, first stored value).
    Tables without LUT sequences are kept for reuse: a 16-bit table costs about a millisecond."""
    try:
        key = table_key(info)
        return _table(key, stage, stored_range) if key is not None else _table.__wrapped__(info, stage, stored_range)
    except ValueError as e:  # a window the standard forbids, an unknown VOI LUT Function
        raise parsed.fail(str(e)) from None


@functools.lru_cache(maxsize=64)
def _table(info: DicomInfo, stage: str, stored_range) -> tuple[np.ndarray, int]:
    domain = dicom_display.stored_domain(info)
    values = dicom_display.stage_values(domain, info, stage, stored_range).astype(np.float32)
    values.setflags(write=False)
    return values, int(domain[0])


def _read_file(parsed: ParsedFile, info: DicomInfo, first: int, count: int, out: np.ndarray, table) -> None:
    check_native_length(parsed, info)
    offset = parsed.table["pixel_offset"] + first * native_frame_bytes(info)
    fmt = pixel_format(info, swap_bytes=not parsed.little_endian and info.bits_allocated > 8)
    n = count * frame_values(info)
    try:
        # As a parse of the whole file would: a Pixel Data length past the end is truncation.
        start, length = parsed.table["pixel_offset"], parsed.table["pixel_length"]
        size = os.path.getsize(parsed.source)
        if start + length > size:
            raise parsed.fail(f"truncated: {length} bytes needed at offset {start} but the data ends at {size}")
        if table is None:
            _C.read_stored(os.fspath(parsed.source), offset, out, n, fmt)
        else:
            _C.read_mapped(os.fspath(parsed.source), offset, out, n, fmt, table[0], table[1])
    except _C.ParseError as e:
        raise DicomError(parsed.source, str(e)) from None
    except OSError as e:
        raise DicomError(parsed.source, f"cannot be read: {e.strerror or e}") from None
    if info.samples_per_pixel > 1 and info.planar_configuration == 1:
        planes = out.reshape(count, info.samples_per_pixel, info.rows, info.columns).copy()
        out.reshape(count, info.rows, info.columns, info.samples_per_pixel)[...] = planes.transpose(0, 2, 3, 1)
