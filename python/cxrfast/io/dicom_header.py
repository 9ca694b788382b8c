"""DICOM header: the native parser's element table turned into a typed `DicomInfo`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrfast import _C
from cxrfast.errors import DicomError
from cxrfast.io.dicom_tags import PER_FRAME, REPORTED_SEQUENCES, SHARED, TAG, VR

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
MAX_PIXELS = 1 << 31  # more values than this in one file is not a radiograph


@dataclass(frozen=True)
class Rescale:
    slope: float
    intercept: float
    type: str | None = None


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"  # VOI LUT Function: LINEAR, LINEAR_EXACT or SIGMOID


@dataclass(frozen=True)
class LookupTable:
    """Modality or VOI LUT: input values from `first_mapped` map to `data`, `bits` wide."""

    first_mapped: int
    bits: int
    data: np.ndarray = field(repr=False)
    explanation: str | None = None


@dataclass(frozen=True)
class Padding:
    """Pixel Padding Value and optional Range Limit, in stored values."""

    value: int
    range_limit: int | None = None

    @property
    def low(self) -> int:
        return self.value if self.range_limit is None else min(self.value, self.range_limit)

    @property
    def high(self) -> int:
        return self.value if self.range_limit is None else max(self.value, self.range_limit)


@dataclass(frozen=True)
class SliceGeometry:
    """Where a cross-sectional image lies (PS3.3 C.7.6.2), in the patient's coordinates (mm); each
    field None where the file does not say."""

    position: tuple[float, float, float] | None  # Image Position (Patient): the first pixel's centre
    orientation: tuple[float, ...] | None  # Image Orientation (Patient): row then column direction cosines
    instance_number: int | None
    pixel_spacing: tuple[float, float] | None  # between rows, then between columns
    slice_thickness: float | None
    gantry_tilt: float | None  # Gantry/Detector Tilt, degrees


@dataclass(frozen=True)
class DicomInfo:
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    transfer_syntax: str
    rescale: Rescale | None
    modality_lut: LookupTable | None
    window: Window | None  # the first of `windows`
    windows: tuple[Window, ...]
    voi_lut: LookupTable | None
    presentation_lut_shape: str | None
    padding: Padding | None
    modality: str | None
    view_position: str | None
    patient_id: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    geometry: SliceGeometry | None = None  # for CT and other cross-sections; None when no field is present
    # An enhanced multi-frame image's geometry of each frame (its functional groups); () otherwise.
    frame_geometry: tuple[SliceGeometry, ...] = ()

    @property
    def is_signed(self) -> bool:
        return self.pixel_representation == 1

    @property
    def inverted(self) -> bool:
        """Display inverts: MONOCHROME1, or a Presentation LUT Shape of INVERSE (PS3.3 C.11.6)."""
        return self.photometric_interpretation == "MONOCHROME1" or self.presentation_lut_shape == "INVERSE"


_NUMERIC = {"US": "u2", "SS": "i2", "UL": "u4", "SL": "i4", "OW": "u2", "OB": "u1", "OV": "u8", "FL": "f4", "FD": "f8",
            "SV": "i8", "UV": "u8"}


class ParsedFile:
    """The parser's view of one file: where each element's value lies, and how it is encoded."""

    def __init__(self, source: str | os.PathLike | None, buffer: Any, table: dict):
        self.source = source
        self.table = table
        self.buffer = buffer
        self.dataset = table["inflated"] if table["deflated"] else buffer
        self.little_endian = table["little_endian"]
        self.meta = {tag: (vr, offset, length) for tag, vr, _, _, offset, length in table["meta"]}
        self.elements = {(seq, item, tag): (vr, offset, length) for tag, vr, seq, item, offset, length in table["elements"]}

    def fail(self, reason: str) -> DicomError:
        return DicomError(self.source, reason)

    def raw(self, tag: int, seq: int = 0, item: int = -1) -> tuple[str, bytes] | None:
        found = self.elements.get((seq, item, tag))
        if found is None:
            return None
        vr, offset, length = found
        if length == 0xFFFFFFFF:
            return None
        return vr or VR.get(tag, "UN"), bytes(memoryview(self.dataset)[offset : offset + length])

    def strings(self, keyword: str, seq: int = 0, item: int = -1) -> list[str]:
        found = self.raw(TAG[keyword], seq, item)
        if found is None:
            return []
        text = found[1].decode("latin-1").rstrip("\x00 ")
        return [part.strip(" \x00") for part in text.split("\\")] if text else []

    def string(self, keyword: str, seq: int = 0, item: int = -1) -> str | None:
        values = self.strings(keyword, seq, item)
        return values[0] if values and values[0] else None

    def numbers(self, keyword: str, seq: int = 0, item: int = -1, signed: bool = False) -> np.ndarray | None:
        """Binary (US/SS/OW/...) or decimal string (DS/IS) values as an array."""
        found = self.raw(TAG[keyword], seq, item)
        if found is None or not found[1]:
            return None
        vr, data = found
        if vr == "UN" and VR.get(TAG[keyword]) in ("DS", "IS"):  # an explicit UN of a decimal string (PS3.5 6.2.2)
            vr = VR[TAG[keyword]]
        if vr in ("DS", "IS"):
            try:
                return np.array([float(s) for s in self.strings(keyword, seq, item) if s], dtype=np.float64)
            except ValueError:
                raise self.fail(f"{keyword} holds a non-numeric value {data!r}") from None
        if vr in ("xs", "lt", "UN"):  # ambiguous VR: 16-bit words, signed where pixels are signed
            vr = "SS" if signed else "US"
        code = _NUMERIC.get(vr)
        if code is None:
            raise self.fail(f"{keyword} has unexpected VR {vr}")
        itemsize = int(code[1])
        usable = len(data) - len(data) % itemsize
        return np.frombuffer(data[:usable], dtype=("<" if self.little_endian else ">") + code).astype(code)

    def integer(self, keyword: str, default: int | None = None, signed: bool = False) -> int | None:
        values = self.numbers(keyword, signed=signed)
        if values is None or values.size == 0:
            return default
        if not np.isfinite(values[0]):
            raise self.fail(f"{keyword} holds {values[0]}, not an integer")
        return int(values[0])

    def lut(self, sequence: str, signed: bool) -> LookupTable | None:
        seq = TAG[sequence]
        descriptor = self.numbers("LUTDescriptor", seq, 0)
        data = self.raw(TAG["LUTData"], seq, 0)
        if descriptor is None or data is None:
            return None
        if descriptor.size != 3:
            raise self.fail(f"{sequence} LUT Descriptor has {descriptor.size} values, 3 expected")
        if not np.isfinite(descriptor).all():
            raise self.fail(f"{sequence} LUT Descriptor holds {descriptor.tolist()}, not integers")
        entries = int(descriptor[0]) or 65536  # 0 means 2^16 (PS3.3 C.11.1.1)
        first = int(np.int16(np.uint16(descriptor[1]))) if signed else int(np.uint16(descriptor[1]))
        bits = int(descriptor[2])
        if entries < 0 or not 1 <= bits <= 32:
            raise self.fail(f"{sequence} LUT Descriptor {descriptor.tolist()} is not (entries, first, 1..32 bits)")
        words = self.numbers("LUTData", seq, 0)
        values = words if words is not None and words.size >= entries else np.frombuffer(data[1], np.uint8)
        if values.size < entries:
            raise self.fail(f"{sequence} LUT Data holds {values.size} entries, its descriptor says {entries}")
        return LookupTable(first, bits, values[:entries].astype(np.int64), self.string("LUTExplanation", seq, 0))

    def info(self) -> DicomInfo:
        ts = self.table["transfer_syntax"]
        rows, columns = self.integer("Rows"), self.integer("Columns")
        bits_allocated, bits_stored = self.integer("BitsAllocated"), self.integer("BitsStored")
        missing = [k for k, v in (("Rows", rows), ("Columns", columns), ("BitsAllocated", bits_allocated)) if v is None]
        if missing:
            raise self.fail(f"missing {', '.join(missing)}: not an image")
        bits_stored = bits_allocated if bits_stored is None else bits_stored
        pixel_representation = self.integer("PixelRepresentation", 0)
        signed = pixel_representation == 1
        frames = self.integer("NumberOfFrames", 1)
        photometric = self.string("PhotometricInterpretation") or "MONOCHROME2"
        samples = self.integer("SamplesPerPixel", 1)
        self._check_dimensions(rows, columns, frames, samples, bits_allocated, bits_stored, pixel_representation)

        rescale = self.rescale() or self.frames_rescale(frames)
        centers, widths = self.numbers("WindowCenter"), self.numbers("WindowWidth")
        function = (self.string("VOILUTFunction") or "LINEAR").upper()
        windows: tuple[Window, ...] = ()
        if centers is not None and widths is not None:
            windows = tuple(Window(float(c), float(w), function) for c, w in zip(centers, widths))
        padding_value = self.integer("PixelPaddingValue", signed=signed)
        padding = None
        if padding_value is not None:
            padding = Padding(padding_value, self.integer("PixelPaddingRangeLimit", signed=signed))
        shape = self.string("PresentationLUTShape")
        return DicomInfo(
            rows=rows, columns=columns, frames=frames, samples_per_pixel=samples,
            bits_allocated=bits_allocated, bits_stored=bits_stored,
            high_bit=self.integer("HighBit", bits_stored - 1), pixel_representation=pixel_representation,
            photometric_interpretation=photometric, planar_configuration=self.integer("PlanarConfiguration", 0),
            transfer_syntax=ts, rescale=rescale, modality_lut=self.lut("ModalityLUTSequence", signed),
            window=windows[0] if windows else None, windows=windows, voi_lut=self.lut("VOILUTSequence", False),
            presentation_lut_shape=shape.upper() if shape else None, padding=padding,
            modality=self.string("Modality"), view_position=self.string("ViewPosition"),
            patient_id=self.string("PatientID"), study_instance_uid=self.string("StudyInstanceUID"),
            series_instance_uid=self.string("SeriesInstanceUID"), sop_instance_uid=self.string("SOPInstanceUID"),
            geometry=self.geometry(), frame_geometry=self.frame_geometry(frames),
        )

    def rescale(self, seq: int = 0, item: int = -1) -> Rescale | None:
        slope, intercept = self.numbers("RescaleSlope", seq, item), self.numbers("RescaleIntercept", seq, item)
        if slope is not None and intercept is not None and slope.size and intercept.size:
            return Rescale(float(slope[0]), float(intercept[0]), self.string("RescaleType", seq, item))
        return None

    def frames_rescale(self, frames: int) -> Rescale | None:
        """An enhanced image's rescale, shared or per frame (one for every frame: per-frame
        values that differ are not read)."""
        shared = self.rescale(SHARED, 0)
        if shared is not None:
            return shared
        found = {self.rescale(PER_FRAME, i) for i in range(frames)}
        if len(found) > 1:
            raise self.fail(f"the frames' Rescale Slope/Intercept differ ({len(found)} values), which cxrfast does "
                            "not read")
        return found.pop() if found else None

    def _vector(self, keyword: str, size: int, seq: int = 0, item: int = -1) -> tuple[float, ...] | None:
        values = self.numbers(keyword, seq, item)
        if values is None:
            return None
        if values.size != size or not np.isfinite(values).all():
            raise self.fail(f"{keyword} holds {values.tolist()}, not {size} finite numbers")
        return tuple(float(v) for v in values)

    def _number(self, keyword: str, seq: int = 0, item: int = -1) -> float | None:
        values = self.numbers(keyword, seq, item)
        return float(values[0]) if values is not None and values.size else None

    def geometry(self) -> SliceGeometry | None:
        geometry = SliceGeometry(self._vector("ImagePositionPatient", 3), self._vector("ImageOrientationPatient", 6),
                                 self.integer("InstanceNumber"), self._vector("PixelSpacing", 2),
                                 self._number("SliceThickness"), self._number("GantryDetectorTilt"))
        return None if all(v is None for v in geometry.__dict__.values()) else geometry

    def frame_geometry(self, frames: int) -> tuple[SliceGeometry, ...]:
        """Each frame's plane from the functional groups: per frame where given, else shared."""
        if frames < 2 or not any(k[0] == PER_FRAME for k in self.elements):
            return ()

        def each_frame(read, keyword, *size):
            """The frame's own value, else the shared one, for every frame."""
            return [next((v for v in (read(keyword, *size, PER_FRAME, i), read(keyword, *size, SHARED, 0))
                          if v is not None), None) for i in range(frames)]

        fields = zip(each_frame(self._vector, "ImagePositionPatient", 3),
                     each_frame(self._vector, "ImageOrientationPatient", 6),
                     each_frame(self._vector, "PixelSpacing", 2), each_frame(self._number, "SliceThickness"))
        return tuple(SliceGeometry(position, orientation, None, spacing, thickness, None)
                     for position, orientation, spacing, thickness in fields)

    def _check_dimensions(self, rows, columns, frames, samples, bits_allocated, bits_stored, representation):
        if rows <= 0 or columns <= 0:
            raise self.fail(f"absurd dimensions: {rows} rows × {columns} columns")
        if frames <= 0:
            raise self.fail(f"absurd Number of Frames {frames}")
        if samples not in (1, 3):
            raise self.fail(f"Samples per Pixel {samples} is not 1 or 3")
        if rows * columns * frames * samples > MAX_PIXELS:
            raise self.fail(f"absurd dimensions: {frames} frames of {rows}×{columns}×{samples} exceed 2^31 values")
        if bits_allocated not in (1, 8, 16, 32):
            raise self.fail(f"Bits Allocated {bits_allocated} is not 1, 8, 16 or 32")
        if not 1 <= bits_stored <= bits_allocated:
            raise self.fail(f"Bits Stored {bits_stored} does not fit in Bits Allocated {bits_allocated}")
        if representation not in (0, 1):
            raise self.fail(f"Pixel Representation {representation} is not 0 or 1")


def parse_buffer(source, buffer, *, stop_before_pixels: bool = False, partial: bool = False) -> ParsedFile:
    """Run the native parser over `buffer`, turning its errors into DicomError."""
    try:
        table = _C.parse(buffer, stop_before_pixels=stop_before_pixels, partial=partial, sequences=list(REPORTED_SEQUENCES))
    except _C.ParseError as e:
        raise DicomError(source, str(e)) from None
    return ParsedFile(source, buffer, table)


_HEAD = 1 << 16


def read_parsed(source: str | os.PathLike | bytes | bytearray | memoryview, *, header_only: bool) -> ParsedFile:
    """Parse a path or byte string. For a path with `header_only`, only the header is read:
    prefixes of growing size until the parser reaches the pixel data."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_buffer(None, source, stop_before_pixels=header_only)
    path = os.fspath(source)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            want = _HEAD if header_only else size
            while True:
                f.seek(0)
                data = f.read(want)
                partial = len(data) < size
                parsed = parse_buffer(path, data, stop_before_pixels=header_only, partial=partial)
                if not partial or (parsed.table["complete"] and parsed.table["has_pixel_data"]):
                    return parsed
                want *= 4
    except OSError as e:
        raise DicomError(path, f"cannot be read: {e.strerror or e}") from None


def read_header(source: str | os.PathLike | bytes) -> DicomInfo:
    """The header of a DICOM file as `DicomInfo`, without reading its pixel data."""
    parsed = read_parsed(source, header_only=True)
    if not parsed.table["has_pixel_data"]:
        raise parsed.fail("no Pixel Data (7FE0,0010): not an image")
    return parsed.info()
