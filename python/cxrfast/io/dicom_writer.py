"""Write radiographs and CT slices as DICOM Part 10 files, in any transfer syntax pydicom 3 can
produce.

This is the fixture writer for the readers' tests: it can write the same stored values
native, deflated, or encapsulated (empty, basic or extended offset table; one or several
fragments per frame), so each reader path can be checked against known pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.pixels import get_encoder
from pydicom.uid import UID, generate_uid
from pydicom.valuerep import DSfloat

from cxrfast.io.dicom_uids import (
    HTJ2KLossless,
    JPEG2000,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    EncapsulatedUncompressedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

# pydicom's UID, which knows whether a syntax is encapsulated and its name.
TRANSFER_SYNTAXES: dict[str, UID] = {name: UID(uid) for name, uid in {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "big_endian": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "encapsulated_uncompressed": EncapsulatedUncompressedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg_ls": JPEGLSLossless,
    "jpeg_ls_near": JPEGLSNearLossless,
    "jpeg2000": JPEG2000Lossless,
    "jpeg2000_lossy": JPEG2000,
    "htj2k": HTJ2KLossless,
}.items()}
LOSSY_TRANSFER_SYNTAXES = frozenset({JPEGLSNearLossless, JPEG2000})
# PS3.5 A.4.2 and A.4.11: these put each frame in exactly one fragment.
SINGLE_FRAGMENT_SYNTAXES = frozenset({RLELossless, EncapsulatedUncompressedExplicitVRLittleEndian})

SOP_CLASSES = {"DX": DigitalXRayImageStorageForPresentation, "CR": ComputedRadiographyImageStorage,
               "CT": CTImageStorage}
PHOTOMETRIC_INTERPRETATIONS = ("MONOCHROME1", "MONOCHROME2")
VOI_LUT_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
PRESENTATION_LUT_SHAPES = ("IDENTITY", "INVERSE")
OFFSET_TABLES = ("empty", "basic", "extended")
# Image right is the patient's left and down is toward the feet, as a frontal film is hung.
FRONTAL_VIEWS = ("PA", "AP")
_LOSSY_METHODS = {JPEGLSNearLossless: "ISO_14495_1", JPEG2000: "ISO_15444_1"}


def resolve_transfer_syntax(transfer_syntax: str) -> UID:
    """A short name from `TRANSFER_SYNTAXES` or one of its UIDs -> the UID."""
    if transfer_syntax in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[transfer_syntax]
    if transfer_syntax in TRANSFER_SYNTAXES.values():
        return UID(transfer_syntax)
    raise ValueError(
        f"unknown transfer syntax {transfer_syntax!r}; use a UID or one of {sorted(TRANSFER_SYNTAXES)}"
    )


def _is_native(uid: UID) -> bool:
    return not uid.is_encapsulated


def is_encodable(transfer_syntax: str) -> bool:
    """Whether pixel data can be written in `transfer_syntax` with what is installed here."""
    uid = resolve_transfer_syntax(transfer_syntax)
    # Native and encapsulated-uncompressed bytes need no codec.
    if _is_native(uid) or uid == EncapsulatedUncompressedExplicitVRLittleEndian:
        return True
    try:
        return get_encoder(uid).is_available  # whether a plugin (pylibjpeg, pyjpegls, ...) is installed
    except NotImplementedError:  # pydicom has no encoder at all for this syntax (HTJ2K)
        return False


def encodable_transfer_syntaxes() -> dict[str, UID]:
    """The subset of `TRANSFER_SYNTAXES` that can be written in this environment."""
    return {name: uid for name, uid in TRANSFER_SYNTAXES.items() if is_encodable(uid)}


def _stored_range(bits_stored: int, pixel_representation: int) -> tuple[int, int]:
    if pixel_representation:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1


def _validate_pixels(pixels: np.ndarray, bits_stored: int, pixel_representation: int) -> np.ndarray:
    """(rows, columns) or (frames, rows, columns) integers within the stored range -> 3-D."""
    if pixels.ndim not in (2, 3):
        raise ValueError(f"pixels must be (rows, columns) or (frames, rows, columns), not shape {pixels.shape}")
    if pixels.dtype.kind not in "iu":
        raise ValueError(f"pixels must be stored integer values, not dtype {pixels.dtype}")
    if pixels.size == 0:
        raise ValueError(f"pixels must not be empty, got shape {pixels.shape}")
    frames = pixels.reshape((-1,) + pixels.shape[-2:])
    if max(frames.shape[1:]) > 0xFFFF:
        raise ValueError(f"Rows and Columns are US values (at most 65535), got {frames.shape[1:]}")
    low, high = _stored_range(bits_stored, pixel_representation)
    if frames.min() < low or frames.max() > high:
        kind = "signed" if pixel_representation else "unsigned"
        raise ValueError(
            f"pixel values [{frames.min()}, {frames.max()}] do not fit {bits_stored} {kind} bits [{low}, {high}]"
        )
    return frames


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}")


def _check_stored_value(name: str, value: int, bits_stored: int, pixel_representation: int) -> None:
    low, high = _stored_range(bits_stored, pixel_representation)
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is outside the stored range [{low}, {high}]")


def _encapsulated_frames(frames: np.ndarray, uid: UID, ds: Dataset, near_lossless_error: int,
                         compression_ratio: float) -> list[bytes]:
    """One codestream (or raw little-endian frame) per frame."""
    if uid == EncapsulatedUncompressedExplicitVRLittleEndian:
        dtype = frames.dtype.newbyteorder("<")
        return [frame.astype(dtype, copy=False).tobytes() for frame in frames]
    lossy = {JPEGLSNearLossless: {"jls_error": near_lossless_error}, JPEG2000: {"j2k_cr": [compression_ratio]}}
    return list(get_encoder(uid).iter_encode(
        frames if len(frames) > 1 else frames[0],
        rows=ds.Rows,
        columns=ds.Columns,
        number_of_frames=len(frames),
        samples_per_pixel=1,
        bits_allocated=ds.BitsAllocated,
        bits_stored=ds.BitsStored,
        pixel_representation=ds.PixelRepresentation,
        photometric_interpretation=ds.PhotometricInterpretation,
        **lossy.get(uid, {}),
    ))


def _set_pixel_data(ds: Dataset, frames: np.ndarray, uid: UID, offset_table: str, fragments_per_frame: int,
                    near_lossless_error: int, compression_ratio: float) -> None:
    if _is_native(uid):
        # pydicom writes OB/OW values as given, so big endian byte order is ours to produce.
        order = ">" if uid == ExplicitVRBigEndian else "<"
        ds.PixelData = frames.astype(frames.dtype.newbyteorder(order), copy=False).tobytes()
        ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
        return
    encoded = _encapsulated_frames(frames, uid, ds, near_lossless_error, compression_ratio)
    if offset_table == "extended":
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(encoded)
    else:
        ds.PixelData = encapsulate(encoded, fragments_per_frame, has_bot=offset_table == "basic")
    ds["PixelData"].VR = "OB"
    if uid in LOSSY_TRANSFER_SYNTAXES:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{frames.nbytes / sum(map(len, encoded)):.4g}"
        ds.LossyImageCompressionMethod = _LOSSY_METHODS[uid]


def write_dicom(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    transfer_syntax: str = "explicit",
    photometric_interpretation: str = "MONOCHROME2",
    bits_stored: int = 12,
    pixel_representation: int = 0,
    modality: str = "DX",
    window: tuple[float, float] | None = None,
    voi_lut_function: str | None = None,
    rescale: tuple[float, float] | None = None,
    padding: tuple[int, int | None] | None = None,
    presentation_lut_shape: str | None = None,
    view_position: str = "PA",
    patient_id: str = "CXRFAST-0001",
    seed: int = 0,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    offset_table: str = "empty",
    fragments_per_frame: int = 1,
    near_lossless_error: int = 2,
    compression_ratio: float = 10.0,
    image_position: tuple[float, float, float] | None = None,
    image_orientation: tuple[float, ...] | None = None,
    instance_number: int = 1,
    slice_thickness: float | None = None,
    gantry_tilt: float | None = None,
    frame_of_reference_uid: str | None = None,
) -> Path:
    """Write stored values `pixels` as a DX or CR image and return the path.

    `pixels` holds stored values, (rows, columns) or (frames, rows, columns), of an
    integer dtype within `bits_stored` bits of the given Pixel Representation; Bits
    Allocated is 8 for up to 8 bits stored, else 16. Several frames give Number of
    Frames, which the single-frame DX and CR IODs do not define: that is for exercising
    readers. UIDs not given are derived from `patient_id` and `seed`, so the same call
    writes the same file.

    `window` is (Window Center, Window Width) with `voi_lut_function`; `rescale` is
    (Rescale Slope, Rescale Intercept); `padding` is (Pixel Padding Value, Pixel Padding
    Range Limit or None), in stored values. `presentation_lut_shape` is written only
    when given.

    Encapsulated syntaxes take `offset_table` ("empty" Basic Offset Table, "basic" with
    frame offsets, or "extended" for an Extended Offset Table with an empty Basic one)
    and `fragments_per_frame`. `near_lossless_error` is the JPEG-LS NEAR parameter of
    "jpeg_ls_near"; `compression_ratio` is the target of "jpeg2000_lossy".

    A CT slice (`modality="CT"`) has no View Position; it takes Image Position and Orientation
    (Patient), Instance Number, Slice Thickness and Gantry/Detector Tilt, each written when
    given, and `pixel_spacing` as Pixel Spacing rather than a radiograph's Imager Pixel Spacing.
    """
    uid = resolve_transfer_syntax(transfer_syntax)
    if not is_encodable(uid):
        raise ValueError(f"{uid.name} ({uid}) cannot be encoded here: no pydicom encoder plugin is available")
    _check_choice("photometric_interpretation", photometric_interpretation, PHOTOMETRIC_INTERPRETATIONS)
    _check_choice("pixel_representation", pixel_representation, (0, 1))
    _check_choice("modality", modality, tuple(SOP_CLASSES))
    if modality != "CT":
        _check_choice("view_position", view_position, FRONTAL_VIEWS)
    if image_position is not None and len(image_position) != 3 or image_orientation is not None and len(
            image_orientation) != 6:
        raise ValueError("image_position takes 3 numbers and image_orientation 6")
    _check_choice("offset_table", offset_table, OFFSET_TABLES)
    if presentation_lut_shape is not None:
        _check_choice("presentation_lut_shape", presentation_lut_shape, PRESENTATION_LUT_SHAPES)
    if not 2 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be in 2..16, not {bits_stored}")
    frames = _validate_pixels(np.asarray(pixels), bits_stored, pixel_representation)

    if voi_lut_function is not None:
        _check_choice("voi_lut_function", voi_lut_function, VOI_LUT_FUNCTIONS)
        if window is None:
            raise ValueError("voi_lut_function applies to a window; give window=(center, width)")
    if window is not None:
        # PS3.3 C.11.2.1.2: LINEAR needs a width of at least 1, the others a positive one.
        if window[1] < 1 if voi_lut_function in (None, "LINEAR") else window[1] <= 0:
            raise ValueError(f"Window Width {window[1]} is too small for {voi_lut_function or 'LINEAR'}")
    if rescale is not None and rescale[0] == 0:
        raise ValueError("Rescale Slope must not be 0")
    if padding is not None:
        _check_stored_value("Pixel Padding Value", padding[0], bits_stored, pixel_representation)
        if padding[1] is not None:
            _check_stored_value("Pixel Padding Range Limit", padding[1], bits_stored, pixel_representation)
    if _is_native(uid) and (offset_table != "empty" or fragments_per_frame != 1):
        raise ValueError(f"offset_table and fragments_per_frame apply to encapsulated syntaxes, not {uid.name}")
    if fragments_per_frame < 1:
        raise ValueError(f"fragments_per_frame must be at least 1, not {fragments_per_frame}")
    if fragments_per_frame > 1 and uid in SINGLE_FRAGMENT_SYNTAXES:
        raise ValueError(f"{uid.name} keeps each frame in one fragment; fragments_per_frame must be 1")
    if fragments_per_frame > 1 and offset_table == "extended":
        raise ValueError("an Extended Offset Table needs each frame in one fragment; fragments_per_frame must be 1")
    if near_lossless_error < 1:
        raise ValueError(f"near_lossless_error must be at least 1, not {near_lossless_error}")
    if compression_ratio <= 1:
        raise ValueError(f"compression_ratio must be above 1, not {compression_ratio}")

    study_uid = study_instance_uid or generate_uid(entropy_srcs=[patient_id, str(seed), "study"])
    series_uid = series_instance_uid or generate_uid(entropy_srcs=[study_uid, modality, "series"])
    # Lossless re-encoding keeps the SOP Instance UID; lossy compression makes a new instance.
    lossy = [uid] if uid in LOSSY_TRANSFER_SYNTAXES else []
    instance_uid = sop_instance_uid or generate_uid(entropy_srcs=[series_uid, "instance", *lossy])
    signed = pixel_representation == 1
    # Attenuation-like stored values: higher means less beam intensity unless inverted.
    intensity_sign = 1 if photometric_interpretation == "MONOCHROME1" else -1

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.SOPInstanceUID = instance_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if modality == "CT" else ["DERIVED", "PRIMARY"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "cxrfast"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "PHANTOM^CHEST"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    if modality == "CT":
        ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid(entropy_srcs=[series_uid, "frame"])
        ds.KVP = "120"
        for keyword, value in (("ImagePositionPatient", image_position), ("ImageOrientationPatient", image_orientation),
                               ("SliceThickness", slice_thickness), ("GantryDetectorTilt", gantry_tilt)):
            if value is not None:
                setattr(ds, keyword, [DSfloat(v, auto_format=True) for v in value] if isinstance(value, (tuple, list))
                        else DSfloat(value, auto_format=True))
    else:
        ds.ViewPosition = view_position
        ds.PatientOrientation = ["L", "F"]
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = intensity_sign
    if pixel_spacing is not None and modality == "CT":
        ds.PixelSpacing = list(pixel_spacing)
    elif pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(pixel_spacing)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric_interpretation
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = pixel_representation
    if padding is not None:
        # US or SS follows Pixel Representation (PS3.3 C.7.5.1.1.2).
        ds.add_new(0x00280120, "SS" if signed else "US", padding[0])
        if padding[1] is not None:
            ds.add_new(0x00280121, "SS" if signed else "US", padding[1])
    if window is not None:
        # DS values hold at most 16 characters; auto_format keeps as many digits as fit.
        ds.WindowCenter, ds.WindowWidth = (DSfloat(x, auto_format=True) for x in window)
        if voi_lut_function is not None:
            ds.VOILUTFunction = voi_lut_function
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = (DSfloat(x, auto_format=True) for x in rescale)
        ds.RescaleType = "US"
    if presentation_lut_shape is not None:
        ds.PresentationLUTShape = presentation_lut_shape

    container = np.dtype(f"{'i' if signed else 'u'}{ds.BitsAllocated // 8}")
    _set_pixel_data(ds, frames.astype(container, copy=False), uid, offset_table, fragments_per_frame,
                    near_lossless_error, compression_ratio)
    dcmwrite(path, ds, enforce_file_format=True)
    return Path(path)
