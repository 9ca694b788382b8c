"""DICOM writer: every transfer syntax read back by pydicom, header tags, encapsulation layout."""

import struct

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from cxrfast.io.dicom_writer import (
    LOSSY_TRANSFER_SYNTAXES,
    SINGLE_FRAGMENT_SYNTAXES,
    TRANSFER_SYNTAXES,
    encodable_transfer_syntaxes,
    is_encodable,
    resolve_transfer_syntax,
    write_dicom,
)

ENCODABLE = encodable_transfer_syntaxes()
LOSSLESS = [name for name, uid in TRANSFER_SYNTAXES.items() if uid not in LOSSY_TRANSFER_SYNTAXES]
ENCAPSULATED = [name for name, uid in TRANSFER_SYNTAXES.items() if uid.is_encapsulated]
ROWS, COLUMNS = 64, 48
ITEM, SEQUENCE_DELIMITER = 0xE000FFFE, 0xE0DDFFFE  # (FFFE,E000), (FFFE,E0DD) read as little-endian uint32


def _pixels(bits_stored, pixel_representation, frames=1, seed=0):
    """A smooth ramp plus noise spanning most of the stored range, away from its ends."""
    rng = np.random.default_rng(seed)
    low = -(1 << (bits_stored - 1)) if pixel_representation else 0
    span = (1 << bits_stored) - 1
    ramp = np.linspace(0.05, 0.95, ROWS * COLUMNS).reshape(ROWS, COLUMNS)
    values = low + span * (ramp + rng.uniform(-0.04, 0.04, (frames, ROWS, COLUMNS)))
    values = np.rint(values).astype(np.int64)
    return values[0] if frames == 1 else values


def _stored(ds):
    """Stored values as read back; pydicom has no decoder for Encapsulated Uncompressed,
    so those frames are unpacked from its fragments here."""
    if ds.file_meta.TransferSyntaxUID != TRANSFER_SYNTAXES["encapsulated_uncompressed"]:
        return ds.pixel_array
    count = int(ds.get("NumberOfFrames", 1))
    dtype = f"<{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}"
    frames = [np.frombuffer(f, dtype)[:ds.Rows * ds.Columns].reshape(ds.Rows, ds.Columns)
              for f in generate_frames(ds.PixelData, number_of_frames=count)]
    return np.stack(frames) if count > 1 else frames[0]


def _items(pixel_data):
    """Item values of encapsulated Pixel Data: the Basic Offset Table, then each fragment."""
    items, position = [], 0
    while position < len(pixel_data):
        tag, length = struct.unpack_from("<II", pixel_data, position)
        if tag == SEQUENCE_DELIMITER:
            break
        assert tag == ITEM
        items.append(pixel_data[position + 8:position + 8 + length])
        position += 8 + length
    return items


def test_short_names_and_uids():
    assert TRANSFER_SYNTAXES["implicit"] == "1.2.840.10008.1.2"
    assert TRANSFER_SYNTAXES["explicit"] == "1.2.840.10008.1.2.1"
    assert TRANSFER_SYNTAXES["big_endian"] == "1.2.840.10008.1.2.2"
    assert TRANSFER_SYNTAXES["deflated"] == "1.2.840.10008.1.2.1.99"
    assert TRANSFER_SYNTAXES["encapsulated_uncompressed"] == "1.2.840.10008.1.2.1.98"
    assert TRANSFER_SYNTAXES["rle"] == "1.2.840.10008.1.2.5"
    assert TRANSFER_SYNTAXES["jpeg_ls"] == "1.2.840.10008.1.2.4.80"
    assert TRANSFER_SYNTAXES["jpeg2000"] == "1.2.840.10008.1.2.4.90"
    assert TRANSFER_SYNTAXES["htj2k"] == "1.2.840.10008.1.2.4.201"
    for name, uid in TRANSFER_SYNTAXES.items():
        assert resolve_transfer_syntax(name) == resolve_transfer_syntax(str(uid)) == uid
    with pytest.raises(ValueError, match="unknown transfer syntax"):
        resolve_transfer_syntax("1.2.840.10008.1.2.4.50")


def _write_and_read(tmp_path, pixels, name, **kwargs):
    """The file as pydicom reads it back; None, once the writer has refused it, for a
    syntax this environment cannot encode."""
    if name not in ENCODABLE:
        with pytest.raises(ValueError, match="cannot be encoded here"):
            write_dicom(tmp_path / "x.dcm", pixels, transfer_syntax=name, **kwargs)
        return None
    return pydicom.dcmread(write_dicom(tmp_path / "x.dcm", pixels, transfer_syntax=name, **kwargs))


def test_what_is_encodable_here():
    # No codec needed for the first five; pydicom encodes RLE itself; pyjpegls and
    # pylibjpeg-openjpeg encode JPEG-LS and JPEG 2000.
    assert set(ENCODABLE) == {"implicit", "explicit", "big_endian", "deflated", "encapsulated_uncompressed", "rle",
                              "jpeg_ls", "jpeg_ls_near", "jpeg2000", "jpeg2000_lossy"}
    # pydicom 3.0 has no HTJ2K encoder and OpenJPEG's encoder has no HT block coder.
    assert not is_encodable("htj2k")
    assert all(is_encodable(name) == (name in ENCODABLE) for name in TRANSFER_SYNTAXES)


@pytest.mark.parametrize("bits_stored, pixel_representation", [(8, 0), (12, 0), (12, 1), (16, 0), (16, 1)])
@pytest.mark.parametrize("photometric_interpretation", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_round_trip(name, photometric_interpretation, bits_stored, pixel_representation, tmp_path):
    pixels = _pixels(bits_stored, pixel_representation)
    ds = _write_and_read(tmp_path, pixels, name, bits_stored=bits_stored, pixel_representation=pixel_representation,
                         photometric_interpretation=photometric_interpretation)
    if ds is None:
        return
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[name]
    assert ds.PhotometricInterpretation == photometric_interpretation
    bits_allocated = 8 if bits_stored == 8 else 16
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (bits_allocated, bits_stored, bits_stored - 1)
    assert ds.PixelRepresentation == pixel_representation
    assert "NumberOfFrames" not in ds
    np.testing.assert_array_equal(_stored(ds), pixels)


@pytest.mark.parametrize("pixel_representation", [0, 1])
@pytest.mark.parametrize("name", LOSSLESS)
def test_multi_frame_round_trip(name, pixel_representation, tmp_path):
    pixels = _pixels(12, pixel_representation, frames=3)
    ds = _write_and_read(tmp_path, pixels, name, pixel_representation=pixel_representation)
    if ds is None:
        return
    assert ds.NumberOfFrames == 3
    np.testing.assert_array_equal(_stored(ds), pixels)


@pytest.mark.parametrize("pixel_representation", [0, 1])
def test_near_lossless_jpeg_ls_stays_within_its_error(pixel_representation, tmp_path):
    pixels = _pixels(12, pixel_representation)
    path = write_dicom(tmp_path / "x.dcm", pixels, transfer_syntax="jpeg_ls_near", near_lossless_error=3,
                       pixel_representation=pixel_representation)
    ds = pydicom.dcmread(path)
    error = np.abs(ds.pixel_array.astype(np.int64) - pixels)
    assert 0 < error.max() <= 3
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_14495_1"


def test_lossy_jpeg2000_is_close(tmp_path):
    pixels = _pixels(12, 0)
    path = write_dicom(tmp_path / "x.dcm", pixels, transfer_syntax="jpeg2000_lossy", compression_ratio=5)
    ds = pydicom.dcmread(path)
    error = ds.pixel_array.astype(np.int64) - pixels
    assert error.any() and np.abs(error).mean() < 0.02 * 4095
    assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_15444_1"
    assert float(ds.LossyImageCompressionRatio) > 1


@pytest.mark.parametrize("fragments_per_frame", [1, 3])
@pytest.mark.parametrize("offset_table", ["empty", "basic", "extended"])
@pytest.mark.parametrize("name", [n for n in ENCAPSULATED if TRANSFER_SYNTAXES[n] not in LOSSY_TRANSFER_SYNTAXES])
def test_encapsulation_layout(name, offset_table, fragments_per_frame, tmp_path):
    pixels = _pixels(12, 0, frames=3)
    kwargs = dict(offset_table=offset_table, fragments_per_frame=fragments_per_frame)
    single = TRANSFER_SYNTAXES[name] in SINGLE_FRAGMENT_SYNTAXES or offset_table == "extended"
    if fragments_per_frame > 1 and single and name in ENCODABLE:
        with pytest.raises(ValueError, match="one fragment"):
            write_dicom(tmp_path / "x.dcm", pixels, transfer_syntax=name, **kwargs)
        return
    ds = _write_and_read(tmp_path, pixels, name, **kwargs)
    if ds is None:
        return
    np.testing.assert_array_equal(_stored(ds), pixels)

    basic_offset_table, *fragments = _items(ds.PixelData)
    assert len(fragments) == 3 * fragments_per_frame
    assert all(len(f) % 2 == 0 for f in fragments)
    # Offsets count from the first fragment's item tag: 8 header bytes per item.
    starts = np.cumsum([0] + [8 + len(f) for f in fragments])[:-1]
    frame_starts = starts[::fragments_per_frame].tolist()
    if offset_table == "basic":
        assert list(struct.unpack(f"<{len(basic_offset_table) // 4}I", basic_offset_table)) == frame_starts
    else:
        assert basic_offset_table == b""
    if offset_table == "extended":
        assert list(struct.unpack("<3Q", ds.ExtendedOffsetTable)) == frame_starts
        assert list(struct.unpack("<3Q", ds.ExtendedOffsetTableLengths)) == [len(f) for f in fragments]
    else:
        assert "ExtendedOffsetTable" not in ds
    if name == "encapsulated_uncompressed":
        assert fragments == [frame.astype("<u2").tobytes() for frame in pixels]


def test_big_endian_bytes(tmp_path):
    pixels = _pixels(12, 0)
    path = write_dicom(tmp_path / "x.dcm", pixels, transfer_syntax="big_endian")
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"
    assert raw[132:136] == b"\x02\x00\x00\x00"  # File Meta Information is little endian regardless
    assert b"\x00\x28\x00\x10US\x00\x02\x00\x40" in raw  # Rows = 64, big endian
    ds = pydicom.dcmread(path)
    assert ds.PixelData == pixels.astype(">u2").tobytes()
    assert ds["PixelData"].VR == "OW"


def test_eight_bit_native_pixel_data_is_ob(tmp_path):
    pixels = _pixels(8, 0)[:63, :47]  # an odd number of bytes, padded to even
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", pixels, transfer_syntax="explicit", bits_stored=8))
    assert ds["PixelData"].VR == "OB" and len(ds.PixelData) == pixels.size + 1
    np.testing.assert_array_equal(ds.pixel_array, pixels)


@pytest.mark.parametrize("name", ["explicit", "implicit", "rle"])
def test_header(name, tmp_path):
    pixels = _pixels(12, 1)
    path = write_dicom(
        tmp_path / "x.dcm", pixels, transfer_syntax=name, pixel_representation=1, modality="CR",
        window=(100.5, 2000), voi_lut_function="SIGMOID", rescale=(0.5, -1024), padding=(-2048, -2000),
        presentation_lut_shape="IDENTITY", view_position="AP", patient_id="P42", pixel_spacing=(0.143, 0.143),
    )
    ds = pydicom.dcmread(path)
    assert ds.preamble == b"\x00" * 128
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[name]
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (ROWS, COLUMNS, 1)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 1)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert (float(ds.WindowCenter), float(ds.WindowWidth), ds.VOILUTFunction) == (100.5, 2000.0, "SIGMOID")
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept), ds.RescaleType) == (0.5, -1024.0, "US")
    assert (ds.PixelPaddingValue, ds.PixelPaddingRangeLimit) == (-2048, -2000)
    assert ds.PresentationLUTShape == "IDENTITY"
    assert (ds.Modality, ds.ViewPosition, ds.BodyPartExamined, ds.PatientID) == ("CR", "AP", "CHEST", "P42")
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert [float(x) for x in ds.ImagerPixelSpacing] == [0.143, 0.143]
    if name != "implicit":
        assert ds["PixelPaddingValue"].VR == ds["PixelPaddingRangeLimit"].VR == "SS"


def test_dx_defaults_and_optional_modules(tmp_path):
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", _pixels(12, 0)))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert (ds.Modality, ds.PresentationIntentType, ds.ViewPosition) == ("DX", "FOR PRESENTATION", "PA")
    # Higher MONOCHROME2 values attenuate more, so they mean less beam intensity.
    assert (ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign) == ("LOG", -1)
    for keyword in ("WindowCenter", "RescaleSlope", "PixelPaddingValue", "PresentationLUTShape", "VOILUTFunction",
                    "NumberOfFrames", "ExtendedOffsetTable", "LossyImageCompression"):
        assert keyword not in ds
    ds1 = pydicom.dcmread(write_dicom(tmp_path / "y.dcm", _pixels(12, 0), photometric_interpretation="MONOCHROME1"))
    assert ds1.PixelIntensityRelationshipSign == 1


def test_same_arguments_write_the_same_bytes_and_uids_follow_the_seed(tmp_path):
    a = write_dicom(tmp_path / "a.dcm", _pixels(12, 0), transfer_syntax="jpeg_ls")
    b = write_dicom(tmp_path / "b.dcm", _pixels(12, 0), transfer_syntax="jpeg_ls")
    assert a.read_bytes() == b.read_bytes()
    other = pydicom.dcmread(write_dicom(tmp_path / "c.dcm", _pixels(12, 0), transfer_syntax="jpeg_ls", seed=1))
    first = pydicom.dcmread(a)
    assert other.StudyInstanceUID != first.StudyInstanceUID and other.SOPInstanceUID != first.SOPInstanceUID
    given = pydicom.dcmread(write_dicom(tmp_path / "d.dcm", _pixels(12, 0), study_instance_uid="1.2.3",
                                        series_instance_uid="1.2.3.4", sop_instance_uid="1.2.3.4.5"))
    assert (given.StudyInstanceUID, given.SeriesInstanceUID, given.SOPInstanceUID) == ("1.2.3", "1.2.3.4", "1.2.3.4.5")
    for uid in (first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID):
        assert len(uid) <= 64 and all(part.isdigit() for part in uid.split("."))


@pytest.mark.parametrize("pixels, kwargs, message", [
    (np.zeros((4, 4), np.float32), {}, "integer"),
    (np.zeros((1, 1, 4, 4), np.uint16), {}, "rows, columns"),
    (np.zeros((0, 4), np.uint16), {}, "empty"),
    (np.full((4, 4), 4096, np.uint16), {}, "do not fit 12 unsigned bits"),
    (np.full((4, 4), -1, np.int16), {}, "do not fit 12 unsigned bits"),
    (np.full((4, 4), 2048, np.int16), {"pixel_representation": 1}, "do not fit 12 signed bits"),
    (np.zeros((4, 4), np.uint16), {"bits_stored": 17}, "bits_stored"),
    (np.zeros((4, 4), np.uint16), {"transfer_syntax": "jpeg"}, "unknown transfer syntax"),
    (np.zeros((4, 4), np.uint16), {"photometric_interpretation": "RGB"}, "photometric_interpretation"),
    (np.zeros((4, 4), np.uint16), {"pixel_representation": 2}, "pixel_representation"),
    (np.zeros((4, 4), np.uint16), {"modality": "MR"}, "modality"),
    (np.zeros((4, 4), np.uint16), {"view_position": "LL"}, "view_position"),
    (np.zeros((4, 4), np.uint16), {"window": (100, 0.5)}, "Window Width"),
    (np.zeros((4, 4), np.uint16), {"window": (100, 0), "voi_lut_function": "SIGMOID"}, "Window Width"),
    (np.zeros((4, 4), np.uint16), {"voi_lut_function": "LINEAR"}, "window"),
    (np.zeros((4, 4), np.uint16), {"voi_lut_function": "LOG"}, "voi_lut_function"),
    (np.zeros((4, 4), np.uint16), {"presentation_lut_shape": "LOG"}, "presentation_lut_shape"),
    (np.zeros((4, 4), np.uint16), {"rescale": (0, 1)}, "Rescale Slope"),
    (np.zeros((4, 4), np.uint16), {"padding": (5000, None)}, "Pixel Padding Value"),
    (np.zeros((4, 4), np.uint16), {"padding": (0, -1)}, "Pixel Padding Range Limit"),
    (np.zeros((4, 4), np.uint16), {"offset_table": "basic"}, "encapsulated"),
    (np.zeros((4, 4), np.uint16), {"fragments_per_frame": 2}, "encapsulated"),
    (np.zeros((4, 4), np.uint16), {"transfer_syntax": "jpeg_ls", "offset_table": "full"}, "offset_table"),
    (np.zeros((4, 4), np.uint16), {"transfer_syntax": "jpeg_ls", "fragments_per_frame": 0}, "at least 1"),
    (np.zeros((4, 4), np.uint16), {"transfer_syntax": "rle", "fragments_per_frame": 2}, "one fragment"),
    (np.zeros((4, 4), np.uint16), {"transfer_syntax": "jpeg_ls_near", "near_lossless_error": 0}, "near_lossless"),
    (np.zeros((4, 4), np.uint16), {"transfer_syntax": "jpeg2000_lossy", "compression_ratio": 1}, "compression_ratio"),
])
def test_rejects_bad_input(pixels, kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        write_dicom(tmp_path / "x.dcm", pixels, **kwargs)
    assert not (tmp_path / "x.dcm").exists()
