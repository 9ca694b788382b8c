"""Bad DICOM input: every failure is a `DicomError` (a ValueError) whose message names the source
(the path, or "<bytes>") and the problem. Nothing may crash the interpreter or raise another type.

Inputs are built from small valid files written with pydicom (16 columns × 12 rows, 12 of 16 bits)
and then cut, patched or spliced byte by byte. Byte-level helpers build explicit VR little endian
elements unless they say otherwise.
"""

from __future__ import annotations

import io
import os
import re
import struct

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless)

from cxrfast import _C
from cxrfast.io import DicomError, read_dicom, read_header

ROWS, COLUMNS = 12, 16
PIXELS = (np.arange(ROWS * COLUMNS, dtype=np.uint16) * 21 % 4096).reshape(ROWS, COLUMNS)
STAGES = ("stored", "modality", "display")
SYNTAXES = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian,
            "big": ExplicitVRBigEndian, "deflated": DeflatedExplicitVRLittleEndian, "rle": RLELossless}
NATIVE = ("explicit", "implicit", "big")

PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
PIXEL_TAG_BE = b"\x7f\xe0\x00\x10"
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
PATIENT_ID = 0x00100020
SEQ_TAG = 0x00400275  # Request Attributes Sequence: any sequence the reader does not interpret


# --- valid files ------------------------------------------------------------------------------

def dataset(ts: str = ExplicitVRLittleEndian, *, pixels: np.ndarray = PIXELS, **attributes) -> Dataset:
    """A small MONOCHROME2 image; `attributes` override or (with None) remove elements."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.42"
    ds.file_meta.TransferSyntaxUID = ts
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "ERRORS01"
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixels.astype(">u2" if ts == ExplicitVRBigEndian else "<u2").tobytes()
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicom_bytes(syntax: str = "explicit", **attributes) -> bytes:
    if syntax == "rle":
        ds = dataset(ExplicitVRLittleEndian, **attributes)
        ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
        return encode(ds)
    return encode(dataset(SYNTAXES[syntax], **attributes))


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {name: dicom_bytes(name) for name in SYNTAXES}


def write(tmp_path, data: bytes, name: str = "case.dcm") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# --- byte-level building blocks (explicit VR little endian) ------------------------------------

def tag_bytes(tag: int) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF)


def element(tag: int, vr: str, value: bytes, *, length: int | None = None) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB") else b" "
    n = len(value) if length is None else length
    if vr in LONG_VRS:
        return tag_bytes(tag) + vr.encode() + b"\0\0" + struct.pack("<I", n) + value
    return tag_bytes(tag) + vr.encode() + struct.pack("<H", n) + value


def implicit_element(tag: int, value: bytes, *, length: int | None = None) -> bytes:
    return tag_bytes(tag) + struct.pack("<I", len(value) if length is None else length) + value


def item(body: bytes, *, undefined: bool = False, delimiter: bool = True) -> bytes:
    if not undefined:
        return tag_bytes(ITEM) + struct.pack("<I", len(body)) + body
    end = tag_bytes(ITEM_DELIMITER) + b"\0\0\0\0" if delimiter else b""
    return tag_bytes(ITEM) + struct.pack("<I", UNDEFINED) + body + end


def sequence(tag: int, items: list[bytes], *, undefined: bool = False, delimiter: bool = True) -> bytes:
    body = b"".join(items)
    if not undefined:
        return element(tag, "SQ", body)
    end = tag_bytes(SEQUENCE_DELIMITER) + b"\0\0\0\0" if delimiter else b""
    return tag_bytes(tag) + b"SQ\0\0" + struct.pack("<I", UNDEFINED) + body + end


def pixel_tag_offset(data: bytes, *, big: bool = False) -> int:
    """Where the Pixel Data element starts. Safe on these files: 12-bit pixel values never
    spell the tag."""
    at = data.find(PIXEL_TAG_BE if big else PIXEL_TAG_LE)
    assert at > 0
    return at


def insert_before_pixels(data: bytes, extra: bytes) -> bytes:
    at = pixel_tag_offset(data)
    return data[:at] + extra + data[at:]


def element_offset(data: bytes, tag: int, vr: str) -> int:
    """Offset of an explicit VR little endian element's tag."""
    at = data.find(tag_bytes(tag) + vr.encode())
    assert at >= 0, f"{tag:08X} {vr} not found"
    return at


def replace_element(data: bytes, tag: int, vr: str, new: bytes) -> bytes:
    """Replace a short-VR explicit little endian element (tag, VR, length, value) with `new`."""
    at = element_offset(data, tag, vr)
    (length,) = struct.unpack_from("<H", data, at + 6)
    return data[:at] + new + data[at + 8 + length:]


def set_short_length(data: bytes, tag: int, vr: str, length: int) -> bytes:
    at = element_offset(data, tag, vr)
    return data[:at + 6] + struct.pack("<H", length) + data[at + 8:]


def meta_end(data: bytes) -> int:
    """Where the file meta information ends, from its group length (0002,0000)."""
    at = element_offset(data, 0x00020000, "UL")
    return at + 12 + struct.unpack_from("<I", data, at + 8)[0]


def set_transfer_syntax(data: bytes, uid: str) -> bytes:
    """Rewrite (0002,0010) and the group length, leaving the dataset bytes as they are."""
    at = element_offset(data, 0x00020010, "UI")
    (old_length,) = struct.unpack_from("<H", data, at + 6)
    new = element(0x00020010, "UI", uid.encode())
    out = data[:at] + new + data[at + 8 + old_length:]
    group = element_offset(out, 0x00020000, "UL")
    (meta_length,) = struct.unpack_from("<I", out, group + 8)
    return out[:group + 8] + struct.pack("<I", meta_length + len(new) - 8 - old_length) + out[group + 12:]


def with_pixel_element(data: bytes, pixel_element: bytes) -> bytes:
    """Replace the Pixel Data element, the last element of these files, with `pixel_element`."""
    return data[:pixel_tag_offset(data)] + pixel_element


def encapsulated(fragments: list[bytes], bot: bytes = b"", *, delimiter: bool = True) -> bytes:
    out = tag_bytes(0x7FE00010) + b"OB\0\0" + struct.pack("<I", UNDEFINED) + item(bot)
    out += b"".join(item(f) for f in fragments)
    return out + (tag_bytes(SEQUENCE_DELIMITER) + b"\0\0\0\0" if delimiter else b"")


def rle_frame(segments: list[bytes], offsets: list[int] | None = None, count: int | None = None) -> bytes:
    """An RLE Lossless frame: 64-byte header (count, 15 offsets), then the segments."""
    if offsets is None:
        offsets, at = [], 64
        for s in segments:
            offsets.append(at)
            at += len(s)
    header = struct.pack("<I", len(segments) if count is None else count)
    header += struct.pack(f"<{len(offsets)}I", *offsets) + b"\0" * (60 - 4 * len(offsets))
    return header + b"".join(segments)


def packbits_literal(values: bytes) -> bytes:
    out = b""
    for k in range(0, len(values), 128):
        chunk = values[k:k + 128]
        out += bytes([len(chunk) - 1]) + chunk
    return out


def rle_reference_frame() -> bytes:
    """The RLE frame pydicom writes for PIXELS (two segments: high bytes, then low bytes)."""
    data = dicom_bytes("rle")
    table = _C.parse(data)
    (_, offset, length), = table["fragments"]
    return data[offset:offset + length]


# --- assertions -------------------------------------------------------------------------------

def expect(source, *, match: str, stages=STAGES, header: bool | None = None, **kwargs) -> None:
    """read_dicom at every stage raises DicomError naming `source` and matching `match`; with
    `header`, read_header raises the same (True) or succeeds (False)."""
    name = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    for stage in stages:
        with pytest.raises(DicomError) as caught:
            read_dicom(source, stage=stage, **kwargs)
        check_message(caught.value, name, match)
    if header is True:
        with pytest.raises(DicomError) as caught:
            read_header(source)
        check_message(caught.value, name, match)
    elif header is False:
        read_header(source)


def check_message(error: DicomError, name: str, match: str) -> None:
    assert isinstance(error, ValueError)
    message = str(error)
    assert message.startswith(f"{name}: "), message
    assert error.source == name
    assert re.search(match, message, re.IGNORECASE), f"{match!r} not in {message!r}"


def both(tmp_path, data: bytes):
    """The same input as a path and as bytes."""
    return [write(tmp_path, data), data]


# --- baselines: the files the cases start from are read correctly ------------------------------

@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_valid_files_read(tmp_path, files, syntax):
    for source in both(tmp_path, files[syntax]):
        image = read_dicom(source, stage="stored")
        np.testing.assert_array_equal(image.pixels, PIXELS)
        assert read_header(source).rows == ROWS


# --- truncation -------------------------------------------------------------------------------

CUTS = 20


def cut_points(data: bytes, n: int = CUTS, in_pixels: int = 7) -> list[int]:
    """n offsets spread through the file, `in_pixels` of them in the Pixel Data element, each
    inside an element (its length field or the middle of its value): a cut exactly between two
    elements leaves a shorter valid dataset, not a truncated one."""
    table = _C.parse(data)
    start = table["pixel_offset"]
    header = set()
    for _, _, _, _, offset, length in table["meta"] + table["elements"]:
        header.add(offset - 2)
        if 2 <= length < UNDEFINED:
            header.add(offset + length // 2)
    header = sorted(c for c in header if 132 < c < start - 12)
    if table["encapsulated"]:
        (_, offset, length), = table["fragments"]
        pixels = [start - 6, start - 2, start + 2, start + 6, offset - 2, offset + length // 2, len(data) - 4]
    else:
        length = table["pixel_length"]
        pixels = [start - 6, start - 2, start + 1, start + length // 3, start + length // 2, start + 2 * length // 3,
                  start + length - 1]
    spread = [header[round(k * (len(header) - 1) / (n - in_pixels - 1))] for k in range(n - in_pixels)]
    return spread + pixels[:in_pixels]


@pytest.mark.parametrize("cut", range(CUTS))
@pytest.mark.parametrize("syntax", NATIVE + ("rle",))
def test_truncated(tmp_path, files, syntax, cut):
    data = files[syntax]
    points = cut_points(data)
    assert len(set(points)) == CUTS  # really spread through header and pixel data
    truncated = data[:points[cut]]
    in_pixels = points[cut] >= _C.parse(data)["pixel_offset"]  # the header before it is whole
    for source in both(tmp_path, truncated):
        # Mentions truncation, or the bytes that are missing.
        expect(source, match=r": truncated", header=not in_pixels)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_deflated(tmp_path, files, fraction):
    data = files["deflated"]
    start = meta_end(data)
    truncated = data[:start + int((len(data) - start) * fraction)]
    for source in both(tmp_path, truncated):
        # Offsets count in the inflated dataset. (A deflate stream without its end is accepted,
        # as pydicom does: cut exactly at an element boundary, the dataset just ends there.)
        expect(source, match=r": truncated: \d+ bytes needed at offset \d+")


def test_truncated_before_dicm_prefix(tmp_path, files):
    for source in both(tmp_path, files["explicit"][:100]):
        expect(source, match="not DICOM", header=True)


def test_truncated_inside_file_meta_at_element_boundary(tmp_path, files):
    data = files["explicit"]
    # Cut right after (0002,0001) with a few bytes of the next header: the group length says more.
    at = element_offset(data, 0x00020002, "UI") + 5
    for source in both(tmp_path, data[:at]):
        expect(source, match="truncated: the file meta information ends", header=True)


def test_truncated_pixel_data_names_missing_bytes(tmp_path, files):
    data = files["explicit"][:-100]
    start = _C.parse(data, stop_before_pixels=True)["pixel_offset"]
    for source in both(tmp_path, data):  # the fast path for files says what a full parse says
        expect(source, match=rf"truncated: 384 bytes needed at offset {start} but the data ends at {len(data)}",
               header=False)


# --- lengths past the end ---------------------------------------------------------------------

def test_short_element_length_past_end(tmp_path, files):
    data = set_short_length(files["explicit"], PATIENT_ID, "LO", 0xFFF0)
    for source in both(tmp_path, data):
        expect(source, match=r"truncated: 65520 bytes needed", header=True)


def test_long_element_length_past_end(tmp_path, files):
    text = element(0x0040A160, "UT", b"a free text value")
    data = insert_before_pixels(files["explicit"], text)
    at = element_offset(data, 0x0040A160, "UT")
    data = data[:at + 8] + struct.pack("<I", 0x7FFFFFF0) + data[at + 12:]
    for source in both(tmp_path, data):
        expect(source, match=r"truncated: 2147483632 bytes needed", header=True)


def test_implicit_element_length_past_end(tmp_path, files):
    data = files["implicit"]
    at = data.find(tag_bytes(PATIENT_ID))
    data = data[:at + 4] + struct.pack("<I", 0x7FFFFFF0) + data[at + 8:]
    for source in both(tmp_path, data):
        expect(source, match=r"truncated: 2147483632 bytes needed", header=True)


def test_pixel_data_length_past_end(tmp_path, files):
    data = files["explicit"]
    at = pixel_tag_offset(data)
    data = data[:at + 8] + struct.pack("<I", 0x10000) + data[at + 12:]
    for source in both(tmp_path, data):
        expect(source, match=rf"truncated: 65536 bytes needed at offset {at + 12} but the data ends at {len(data)}",
               header=False)


def test_element_runs_past_its_item(tmp_path, files):
    # The item holds 314 bytes; the element in it claims 400 from its offset 8.
    inner = element(PATIENT_ID, "LO", b"INSIDE", length=400)
    data = insert_before_pixels(files["explicit"], sequence(SEQ_TAG, [item(inner + b"\0" * 300)]))
    for source in both(tmp_path, data):
        expect(source, match=r"runs past its enclosing item", header=True)


def test_item_runs_past_its_sequence(tmp_path, files):
    seq = sequence(SEQ_TAG, [item(element(PATIENT_ID, "LO", b"INSIDE"))])
    seq = seq[:12] + tag_bytes(ITEM) + struct.pack("<I", 100) + seq[20:]  # item longer than the sequence
    data = insert_before_pixels(files["explicit"], seq)
    for source in both(tmp_path, data):
        expect(source, match=r"item at offset \d+ runs past sequence \(0040,0275\)", header=True)


# --- sequences and items ----------------------------------------------------------------------

def test_sequence_without_delimiter_before_pixel_data(tmp_path, files):
    seq = sequence(SEQ_TAG, [item(element(PATIENT_ID, "LO", b"A"), undefined=True)], undefined=True,
                   delimiter=False)
    data = insert_before_pixels(files["explicit"], seq)
    for source in both(tmp_path, data):
        expect(source, match=r"expected an item in sequence \(0040,0275\) .*found \(7FE0,0010\)", header=True)


def test_sequence_without_delimiter_at_end(tmp_path, files):
    seq = sequence(SEQ_TAG, [item(element(PATIENT_ID, "LO", b"A"))], undefined=True, delimiter=False)
    data = files["explicit"] + seq
    expect(data, match=r"truncated: sequence \(0040,0275\) has no sequence delimiter", header=False)
    # By design, the fast path for files reads the header and the native pixels and stops there.
    np.testing.assert_array_equal(read_dicom(write(tmp_path, data), stage="stored").pixels, PIXELS)


def test_item_without_delimiter_at_end(tmp_path, files):
    seq = sequence(SEQ_TAG, [item(element(PATIENT_ID, "LO", b"A"), undefined=True, delimiter=False)],
                   undefined=True, delimiter=False)
    data = files["explicit"] + seq
    expect(data, match=r"truncated: item without a delimiter")


def test_stray_delimiters(tmp_path, files):
    stray_item = tag_bytes(ITEM) + struct.pack("<I", 0)
    stray_delimiter = tag_bytes(ITEM_DELIMITER) + struct.pack("<I", 0)
    for extra, match in [(stray_item, "item outside a sequence"),
                         (stray_delimiter, "item delimiter outside an item"),
                         (tag_bytes(SEQUENCE_DELIMITER) + b"\0" * 4, "sequence delimiter outside a sequence")]:
        data = insert_before_pixels(files["explicit"], extra)
        for source in both(tmp_path, data):
            expect(source, match=match, header=True)


def test_invalid_vr(tmp_path, files):
    data = insert_before_pixels(files["explicit"], tag_bytes(0x00200013) + b"\x01\x02" + struct.pack("<H", 2) + b"1 ")
    for source in both(tmp_path, data):
        expect(source, match=r"invalid VR bytes 0x01,0x02 for \(0020,0013\)", header=True)


def nested(levels: int, *, undefined: bool) -> bytes:
    body = element(PATIENT_ID, "LO", b"DEEP")
    if undefined:  # built flat: nesting 20,000 levels by concatenation would copy gigabytes
        opening = sequence(SEQ_TAG, [item(b"", undefined=True, delimiter=False)], undefined=True, delimiter=False)
        closing = tag_bytes(ITEM_DELIMITER) + b"\0" * 4 + tag_bytes(SEQUENCE_DELIMITER) + b"\0" * 4
        return opening * levels + body + closing * levels
    for _ in range(levels):
        body = sequence(SEQ_TAG, [item(body, undefined=undefined)], undefined=undefined)
    return body


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_deep_nesting(tmp_path, files, undefined):
    ok = insert_before_pixels(files["explicit"], nested(20, undefined=undefined))
    np.testing.assert_array_equal(read_dicom(ok, stage="stored").pixels, PIXELS)
    data = insert_before_pixels(files["explicit"], nested(100, undefined=undefined))
    for source in both(tmp_path, data):
        expect(source, match=r"nested deeper than 64 levels", header=True)


def test_very_deep_nesting_is_not_a_stack_overflow(files):
    data = insert_before_pixels(files["explicit"], nested(20_000, undefined=True))
    expect(data, match=r"nested deeper than 64 levels", header=True)


# --- encapsulated pixel data ------------------------------------------------------------------

@pytest.fixture(scope="module")
def rle_frame_bytes() -> bytes:
    return rle_reference_frame()


def test_rebuilt_rle_file_reads(tmp_path, files, rle_frame_bytes):
    data = with_pixel_element(files["rle"], encapsulated([rle_frame_bytes]))
    for source in both(tmp_path, data):
        np.testing.assert_array_equal(read_dicom(source, stage="stored").pixels, PIXELS)
    # Split in two fragments, with a Basic Offset Table.
    half = len(rle_frame_bytes) // 2
    data = with_pixel_element(files["rle"], encapsulated([rle_frame_bytes[:half], rle_frame_bytes[half:]],
                                                         bot=struct.pack("<I", 0)))
    np.testing.assert_array_equal(read_dicom(data, stage="stored").pixels, PIXELS)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 6, 7])
def test_basic_offset_table_length_not_multiple_of_4(tmp_path, files, rle_frame_bytes, length):
    data = with_pixel_element(files["rle"], encapsulated([rle_frame_bytes], bot=b"\0" * length))
    for source in both(tmp_path, data):
        expect(source, match=rf"Basic Offset Table length {length} is not a multiple of 4",
               header=False)


def test_basic_offset_table_undefined_length(tmp_path, files, rle_frame_bytes):
    pixel = encapsulated([rle_frame_bytes])
    pixel = pixel[:16] + struct.pack("<I", UNDEFINED) + pixel[20:]
    for source in both(tmp_path, with_pixel_element(files["rle"], pixel)):
        expect(source, match=r"Basic Offset Table length 4294967295", header=False)


def test_encapsulated_without_offset_table_item(tmp_path, files):
    pixel = tag_bytes(0x7FE00010) + b"OB\0\0" + struct.pack("<I", UNDEFINED) + element(PATIENT_ID, "LO", b"X")
    for source in both(tmp_path, with_pixel_element(files["rle"], pixel)):
        expect(source, match=r"does not start with a Basic Offset Table item", header=False)


def test_fragment_length_past_end(tmp_path, files, rle_frame_bytes):
    pixel = encapsulated([rle_frame_bytes], delimiter=False)
    at = len(pixel) - len(rle_frame_bytes) - 4
    pixel = pixel[:at] + struct.pack("<I", len(rle_frame_bytes) + 1000) + pixel[at + 4:]
    for source in both(tmp_path, with_pixel_element(files["rle"], pixel)):
        expect(source, match=rf"truncated: {len(rle_frame_bytes) + 1000} bytes needed", header=False)


def test_fragment_with_undefined_length(tmp_path, files, rle_frame_bytes):
    pixel = encapsulated([rle_frame_bytes])
    at = len(pixel) - 8 - len(rle_frame_bytes) - 4
    pixel = pixel[:at] + struct.pack("<I", UNDEFINED) + pixel[at + 4:]
    for source in both(tmp_path, with_pixel_element(files["rle"], pixel)):
        expect(source, match=r"pixel data fragment with undefined length", header=False)


def test_fragments_without_sequence_delimiter(tmp_path, files, rle_frame_bytes):
    data = with_pixel_element(files["rle"], encapsulated([rle_frame_bytes], delimiter=False))
    for source in both(tmp_path, data):
        expect(source, match=r"truncated: encapsulated pixel data has no sequence delimiter", header=False)


def test_fragment_list_broken_by_another_element(tmp_path, files, rle_frame_bytes):
    pixel = encapsulated([rle_frame_bytes], delimiter=False) + element(PATIENT_ID, "LO", b"X")
    for source in both(tmp_path, with_pixel_element(files["rle"], pixel)):
        expect(source, match=r"expected a pixel data fragment at offset \d+, found \(0010,0020\)", header=False)


def test_no_fragments(tmp_path, files):
    for source in both(tmp_path, with_pixel_element(files["rle"], encapsulated([]))):
        expect(source, match=r"encapsulated Pixel Data holds no fragments", header=False)


def test_offset_table_frame_count_mismatch(tmp_path, files, rle_frame_bytes):
    pixel = encapsulated([rle_frame_bytes], bot=struct.pack("<2I", 0, 8))
    for source in both(tmp_path, with_pixel_element(files["rle"], pixel)):
        expect(source, match=r"offset table lists 2 frames, Number of Frames is 1", header=False)


def rle_case(files, frame: bytes) -> bytes:
    return with_pixel_element(files["rle"], encapsulated([frame]))


@pytest.mark.parametrize("count", [0, 1, 3, 15, 16, 0xFFFFFFFF])
def test_rle_wrong_segment_count(tmp_path, files, rle_frame_bytes, count):
    frame = struct.pack("<I", count) + rle_frame_bytes[4:]
    for source in both(tmp_path, rle_case(files, frame)):
        expect(source, match=rf"frame 0: RLE header lists {count} segments, but 2 are needed", header=False)


@pytest.mark.parametrize("segment", [0, 1])
@pytest.mark.parametrize("offset", [0, 63, 10_000, 0xFFFFFFFF])
def test_rle_segment_offset_outside_frame(tmp_path, files, rle_frame_bytes, offset, segment):
    at = 4 + 4 * segment
    frame = rle_frame_bytes[:at] + struct.pack("<I", offset) + rle_frame_bytes[at + 4:]
    for source in both(tmp_path, rle_case(files, frame)):
        expect(source, match=rf"RLE segment {segment} has offset {offset} outside the frame of {len(frame)} bytes",
               header=False)


def test_rle_segment_offsets_out_of_order(tmp_path, files, rle_frame_bytes):
    (first,) = struct.unpack_from("<I", rle_frame_bytes, 4)
    (second,) = struct.unpack_from("<I", rle_frame_bytes, 8)
    frame = rle_frame_bytes[:4] + struct.pack("<2I", second, first) + rle_frame_bytes[12:]
    expect(rle_case(files, frame), match=rf"RLE segment 1 has offset {first}, before segment 0 at {second}")


def test_rle_segment_decodes_too_short(tmp_path, files):
    high = packbits_literal((PIXELS >> 8).astype(np.uint8).tobytes())
    low = packbits_literal((PIXELS & 0xFF).astype(np.uint8).tobytes()[:100])  # 100 of 192 bytes
    for source in both(tmp_path, rle_case(files, rle_frame([high, low]))):
        expect(source, match=r"RLE segment 1 decodes to 100 bytes, expected 192", header=False)
    # The same segments in full decode to the image.
    full = rle_frame([high, packbits_literal((PIXELS & 0xFF).astype(np.uint8).tobytes())])
    np.testing.assert_array_equal(read_dicom(rle_case(files, full), stage="stored").pixels, PIXELS)


def test_rle_literal_run_past_segment(tmp_path, files):
    high = packbits_literal((PIXELS >> 8).astype(np.uint8).tobytes())
    low = bytes([127]) + b"\0" * 10  # promises 128 literal bytes, holds 10
    for source in both(tmp_path, rle_case(files, rle_frame([high, low]))):
        expect(source, match=r"RLE literal run of 128 bytes runs past its segment", header=False)


def test_rle_replicate_run_without_its_byte(tmp_path, files):
    high = packbits_literal((PIXELS >> 8).astype(np.uint8).tobytes())
    expect(rle_case(files, rle_frame([high, bytes([0x81])])), match=r"replicate run without its byte")


@pytest.mark.parametrize("size", [0, 1, 63])
def test_rle_frame_shorter_than_header(tmp_path, files, size):
    for source in both(tmp_path, rle_case(files, b"\x02" * size)):
        expect(source, match=rf"RLE frame of {size} bytes is shorter than its 64-byte header",
               header=False)


# --- transfer syntax --------------------------------------------------------------------------

def test_declared_explicit_but_implicit_is_tolerated(tmp_path, files):
    data = set_transfer_syntax(files["implicit"], ExplicitVRLittleEndian)
    assert _C.parse(data)["transfer_syntax"] == ExplicitVRLittleEndian
    for source in both(tmp_path, data):
        np.testing.assert_array_equal(read_dicom(source, stage="stored").pixels, PIXELS)
        assert read_header(source).patient_id == "ERRORS01"


def test_declared_implicit_but_explicit_is_tolerated(tmp_path, files):
    data = set_transfer_syntax(files["explicit"], ImplicitVRLittleEndian)
    for source in both(tmp_path, data):
        np.testing.assert_array_equal(read_dicom(source, stage="stored").pixels, PIXELS)


def test_declared_deflated_but_not_deflated(tmp_path, files):
    data = set_transfer_syntax(files["explicit"], DeflatedExplicitVRLittleEndian)
    for source in both(tmp_path, data):
        expect(source, match=r"deflated dataset cannot be inflated", header=True)


def test_deflate_stream_that_is_garbage(tmp_path, files):
    data = files["deflated"]
    data = data[:meta_end(data)] + bytes([0xFF]) * 64
    for source in both(tmp_path, data):
        expect(source, match=r"deflated dataset cannot be inflated", header=True)


@pytest.mark.filterwarnings("ignore:The number of bytes of pixel data:UserWarning")  # pydicom's, on the way
def test_encapsulated_pixel_data_under_native_syntax(tmp_path):
    """Found by fuzzing: RLE fragments under Explicit VR Little Endian went to pydicom's native
    'decoder', whose array had the wrong size -> an uncaught numpy ValueError on reshape."""
    ds = dataset(pixels=np.stack([PIXELS[:4, :4]] * 3), NumberOfFrames=3)
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    data = set_transfer_syntax(encode(ds), ExplicitVRLittleEndian)
    for source in both(tmp_path, data):
        expect(source, match=r"frame 0 (decodes to \d+ values as Explicit VR Little Endian, 16 expected|cannot be)")


def test_unknown_transfer_syntax_with_fragments(tmp_path, files, rle_frame_bytes):
    data = set_transfer_syntax(files["rle"], "1.2.3.4")
    for source in both(tmp_path, data):
        expect(source, match=r"unsupported Transfer Syntax 1\.2\.3\.4", header=False)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")
def test_transfer_syntax_that_is_not_text(tmp_path, files):
    """Found by fuzzing: a UID with bytes that are not UTF-8 raised UnicodeDecodeError."""
    data = files["rle"]
    at = data.find(RLELossless.encode())
    data = data[:at] + b"1.2.840.10008.1.\xff\xe0\x85" + data[at + len(RLELossless):]
    assert _C.parse(data)["transfer_syntax"] == "1.2.840.10008.1.\xff\xe0\x85"
    for source in both(tmp_path, data):
        expect(source, match=r"unsupported Transfer Syntax", header=False)


# --- what is not an image ---------------------------------------------------------------------

def test_missing_pixel_data(tmp_path):
    data = encode(dataset(PixelData=None))
    for source in both(tmp_path, data):
        expect(source, match=r"no Pixel Data \(7FE0,0010\): not an image", header=True)


@pytest.mark.parametrize("keyword", ["Rows", "Columns", "BitsAllocated"])
def test_missing_image_attribute(tmp_path, keyword):
    ds = dataset()
    ds["PixelData"].VR = "OW"  # pydicom picks OB or OW from Bits Allocated
    delattr(ds, keyword)
    data = encode(ds)
    for source in both(tmp_path, data):
        expect(source, match=rf"missing {keyword}: not an image", header=True)


@pytest.mark.parametrize("photometric", ["PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "HSV"])
def test_unsupported_photometric(tmp_path, photometric):
    samples = 1 if photometric == "PALETTE COLOR" else 3
    pixels = np.zeros((ROWS, COLUMNS * samples), np.uint16)
    ds = dataset(pixels=pixels, PhotometricInterpretation=photometric)
    ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = COLUMNS, samples, 0
    for source in both(tmp_path, encode(ds)):
        expect(source, match=rf"unsupported Photometric Interpretation {photometric}", header=False)


def rgb_file() -> bytes:
    rgb = np.arange(ROWS * COLUMNS * 3, dtype=np.uint8).reshape(ROWS, COLUMNS, 3)
    ds = dataset(pixels=rgb.reshape(ROWS, -1), PhotometricInterpretation="RGB")
    ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = COLUMNS, 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rgb.tobytes()
    return encode(ds)


def test_rgb_needs_stored_stage(tmp_path):
    data = rgb_file()
    for source in both(tmp_path, data):
        assert read_dicom(source, stage="stored").pixels.shape == (ROWS, COLUMNS, 3)
        for stage in ("modality", "display"):
            expect(source, stages=(stage,), match=rf"the {stage} stage needs MONOCHROME1 or MONOCHROME2, not RGB")


def test_samples_contradict_photometric(tmp_path):
    data = encode(dataset(SamplesPerPixel=3, PlanarConfiguration=0))
    for source in both(tmp_path, data):
        expect(source, stages=("stored",), match=r"Samples per Pixel 3 contradicts Photometric Interpretation")


# --- dimensions -------------------------------------------------------------------------------

def patched_number(data: bytes, keyword_tag: int, vr: str, text: bytes) -> bytes:
    return insert_before_pixels(data, element(keyword_tag, vr, text))


DIMENSION_CASES = {
    "rows 0": (dict(Rows=0), r"absurd dimensions: 0 rows"),
    "columns 0": (dict(Columns=0), r"absurd dimensions: 12 rows × 0 columns"),
    "frames 0": (dict(NumberOfFrames=0), r"absurd Number of Frames 0"),
    "frames -3": (dict(NumberOfFrames=-3), r"absurd Number of Frames -3"),
    "frames huge": (dict(NumberOfFrames=2_000_000_000), r"exceed 2\^31 values"),
    "rows×columns huge": (dict(Rows=65535, Columns=65535, NumberOfFrames=2), r"exceed 2\^31 values"),
    "bits stored > allocated": (dict(BitsStored=17), r"Bits Stored 17 does not fit in Bits Allocated 16"),
    "bits stored 0": (dict(BitsStored=0), r"Bits Stored 0 does not fit"),
    "bits allocated 12": (dict(BitsAllocated=12), r"Bits Allocated 12 is not 1, 8, 16 or 32"),
    "bits allocated 64": (dict(BitsAllocated=64, BitsStored=64), r"Bits Allocated 64 is not"),
    "samples 2": (dict(SamplesPerPixel=2), r"Samples per Pixel 2 is not 1 or 3"),
    "pixel representation 2": (dict(PixelRepresentation=2), r"Pixel Representation 2 is not 0 or 1"),
}


@pytest.mark.parametrize("case", list(DIMENSION_CASES))
def test_absurd_dimensions(tmp_path, case):
    attributes, match = DIMENSION_CASES[case]
    data = encode(dataset(**attributes))
    for source in both(tmp_path, data):
        expect(source, match=match, header=True)


@pytest.mark.parametrize("text", [b"nan", b"inf", b"-inf", b"1e400"])
def test_number_of_frames_not_finite(tmp_path, files, text):
    """Found by fuzzing: an IS value float() accepts but int() does not -> ValueError/OverflowError."""
    data = insert_before_pixels(files["explicit"], element(0x00280008, "IS", text))
    for source in both(tmp_path, data):
        expect(source, match=r"NumberOfFrames holds -?(nan|inf), not an integer", header=True)


def test_rows_with_float_vr_not_finite(tmp_path, files):
    data = replace_element(files["explicit"], 0x00280010, "US", element(0x00280010, "FD", struct.pack("<d", np.nan)))
    for source in both(tmp_path, data):
        expect(source, match=r"Rows holds nan, not an integer", header=True)


def test_non_numeric_decimal_string(tmp_path, files):
    data = insert_before_pixels(files["explicit"], element(0x00281053, "DS", b"one"))
    for source in both(tmp_path, data):
        expect(source, match=r"RescaleSlope holds a non-numeric value", header=True)


@pytest.mark.parametrize("have", [0, 2, 100, 382])
def test_pixel_data_shorter_than_image(tmp_path, have):
    data = encode(dataset(PixelData=PIXELS.astype("<u2").tobytes()[:have]))
    for source in both(tmp_path, data):
        expect(source, match=rf"Pixel Data holds {have} bytes, 384 needed for 1 frame\(s\) of 12×16×1 at 16 bits",
               header=False)


def test_pixel_data_shorter_than_frames(tmp_path):
    data = encode(dataset(NumberOfFrames=3))
    for source in both(tmp_path, data):
        expect(source, match=r"Pixel Data holds 384 bytes, 1152 needed for 3 frame\(s\)", header=False)
        # One frame that is there is still not read: the file is inconsistent.
        expect(source, stages=("stored",), match=r"1152 needed", frame=0)


# --- not DICOM, not a file --------------------------------------------------------------------

def test_empty_file(tmp_path):
    for source in both(tmp_path, b""):
        expect(source, match=r"not DICOM: 0 bytes are too few for one element", header=True)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    data = np.random.default_rng(seed).integers(0, 256, 1000 + 997 * seed, dtype=np.uint8).tobytes()
    for source in both(tmp_path, data):
        expect(source, match=r"not DICOM|truncated|invalid VR|expected|outside", header=True)


def test_png_header(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 16, 12, 8, 0, 0, 0, 0)
    png += b"\0" * 4 + b"\0\0\0\0IEND\xaeB`\x82"
    for source in both(tmp_path, png):
        expect(source, match=r"not DICOM: no 'DICM' prefix", header=True)


def test_dicm_prefix_then_nothing(tmp_path):
    for data in (b"\0" * 128 + b"DICM", b"DICM"):
        for source in both(tmp_path, data):
            expect(source, match=r"not DICOM: 0 bytes are too few", header=True)


def test_text_file(tmp_path):
    for source in both(tmp_path, b"this is not an image\n" * 20):
        expect(source, match=r"not DICOM", header=True)


def test_nonexistent_path(tmp_path):
    path = tmp_path / "missing" / "nothing.dcm"
    expect(path, match=r"cannot be read: No such file or directory", header=True)
    expect(str(path), match=r"cannot be read", header=True)


def test_directory_path(tmp_path):
    expect(tmp_path, match=r"cannot be read: Is a directory", header=True)


# --- arguments --------------------------------------------------------------------------------

def test_frame_out_of_range(tmp_path, files):
    for source in both(tmp_path, files["explicit"]):
        for frame in (1, -1, 5, 2**40):
            with pytest.raises(IndexError, match=rf"frame {frame} is outside the 1 frame\(s\)"):
                read_dicom(source, frame=frame)
        assert read_dicom(source, frame=0, stage="stored").pixels.shape == (ROWS, COLUMNS)


def test_frame_out_of_range_multiframe(tmp_path):
    frames = np.stack([PIXELS, PIXELS // 2, PIXELS // 3])
    ds = dataset(pixels=frames.reshape(-1, COLUMNS), NumberOfFrames=3)
    ds.Rows = ROWS
    for syntax_data in (encode(ds),):
        for source in both(tmp_path, syntax_data):
            np.testing.assert_array_equal(read_dicom(source, frame=2, stage="stored").pixels, frames[2])
            for frame in (3, -1):
                with pytest.raises(IndexError, match=r"outside the 3 frame\(s\)"):
                    read_dicom(source, frame=frame, stage="stored")


def test_unknown_stage(tmp_path, files):
    for source in [*both(tmp_path, files["explicit"]), b"not even dicom"]:
        match = r"stage must be one of \('stored', 'modality', 'display'\), not 'foo'"
        with pytest.raises(ValueError, match=match) as e:
            read_dicom(source, stage="foo")
        assert not isinstance(e.value, DicomError)


# --- corrupt headers: read_header fails like read_dicom ----------------------------------------

def corrupt_headers(files) -> dict[str, tuple[bytes, str]]:
    explicit = files["explicit"]
    return {
        "element length past end": (set_short_length(explicit, PATIENT_ID, "LO", 0xFFF0), r"truncated"),
        "meta length past end": (set_short_length(explicit, 0x00020010, "UI", 0xFFF0), r"truncated"),
        "sequence without delimiter": (insert_before_pixels(explicit, sequence(SEQ_TAG, [item(b"")], undefined=True,
                                                                              delimiter=False)), r"expected an item"),
        "deep nesting": (insert_before_pixels(explicit, nested(100, undefined=False)), r"nested deeper"),
        "rows 0": (encode(dataset(Rows=0)), r"absurd dimensions"),
        "frames nan": (insert_before_pixels(explicit, element(0x00280008, "IS", b"nan")), r"not an integer"),
        "bits allocated 12": (encode(dataset(BitsAllocated=12)), r"Bits Allocated 12"),
        "no pixel data": (encode(dataset(PixelData=None)), r"no Pixel Data"),
        "not dicom": (b"\0" * 128 + b"DICM" + b"\xff" * 64, r"not DICOM|invalid VR"),
        "truncated header": (explicit[:300], r"truncated"),
        "voi lut bits": (insert_before_pixels(explicit, sequence(0x00283010, [item(
            element(0x00283002, "US", struct.pack("<3H", 4, 0, 2000)) + element(0x00283006, "OW", b"\0" * 8))])),
            r"VOILUTSequence LUT Descriptor \[4, 0, 2000\]"),
    }


CORRUPT_HEADERS = ["element length past end", "meta length past end", "sequence without delimiter", "deep nesting",
                   "rows 0", "frames nan", "bits allocated 12", "no pixel data", "not dicom", "truncated header",
                   "voi lut bits"]


@pytest.mark.parametrize("case", CORRUPT_HEADERS)
def test_read_header_on_corrupt_header(tmp_path, files, case):
    data, match = corrupt_headers(files)[case]
    for source in both(tmp_path, data):
        expect(source, match=match, header=True)


# --- LUTs (found by fuzzing) ------------------------------------------------------------------

def lut_item(descriptor_vr: str, descriptor: bytes, data: bytes) -> bytes:
    return item(element(0x00283002, descriptor_vr, descriptor) + element(0x00283006, "OW", data))


LUT_CASES = {
    "bits 2000": ("US", struct.pack("<3H", 4, 0, 2000), r"LUT Descriptor \[4, 0, 2000\] is not"),
    "bits 0": ("US", struct.pack("<3H", 4, 0, 0), r"LUT Descriptor \[4, 0, 0\] is not"),
    "entries negative": ("SS", struct.pack("<3h", -2, 0, 16), r"LUT Descriptor \[-2, 0, 16\] is not"),
    "descriptor nan": ("FD", struct.pack("<3d", np.nan, 0, 16), r"LUT Descriptor holds \[nan, 0.0, 16.0\]"),
    "two values": ("US", struct.pack("<2H", 4, 0), r"LUT Descriptor has 2 values, 3 expected"),
    "too few entries": ("US", struct.pack("<3H", 400, 0, 16), r"LUT Data holds \d+ entries, its descriptor says 400"),
}


@pytest.mark.parametrize("sequence_tag", [0x00283000, 0x00283010], ids=["modality", "voi"])
@pytest.mark.parametrize("case", list(LUT_CASES))
def test_bad_lut(tmp_path, files, case, sequence_tag):
    vr, descriptor, match = LUT_CASES[case]
    lut = sequence(sequence_tag, [lut_item(vr, descriptor, struct.pack("<4H", 1, 2, 3, 4))])
    data = insert_before_pixels(files["explicit"], lut)
    for source in both(tmp_path, data):
        expect(source, match=match, header=True)


# --- more regressions found by fuzzing --------------------------------------------------------

def test_32_bit_min_max_display_does_not_enumerate_the_range(tmp_path):
    """Found by fuzzing: min-max display over 32-bit stored values built an int64 array of every
    value in [min, max] (32 GiB) -> MemoryError. Only the ends of the range matter."""
    pixels = np.array([[0, 0xFFFFFFF0], [7, 1 << 31]], np.uint32)
    ds = dataset(pixels=pixels, BitsAllocated=32, BitsStored=32, HighBit=31)
    ds.PixelData = pixels.astype("<u4").tobytes()
    for source in both(tmp_path, encode(ds)):
        shown = read_dicom(source, stage="display").pixels
        np.testing.assert_allclose(shown, pixels / 0xFFFFFFF0, rtol=1e-6)


def test_32_bit_min_max_display_through_modality_lut(tmp_path):
    pixels = np.array([[0, 1 << 31], [3, 5]], np.uint32)
    ds = dataset(pixels=pixels, BitsAllocated=32, BitsStored=32, HighBit=31)
    ds.PixelData = pixels.astype("<u4").tobytes()
    data = insert_before_pixels(encode(ds), sequence(0x00283000, [lut_item(
        "US", struct.pack("<3H", 4, 2, 16), struct.pack("<4H", 100, 50, 300, 200))]))
    for source in both(tmp_path, data):
        modality = read_dicom(source, stage="modality").pixels
        np.testing.assert_array_equal(modality, [[100, 200], [50, 200]])
        # min-max over the modality values of stored [0, 2^31]: LUT entries 50..300
        np.testing.assert_allclose(read_dicom(source, stage="display").pixels, [[0.2, 0.6], [0, 0.6]], rtol=1e-6)


def test_bit_packed_file_over_64_kib_from_path(tmp_path):
    """A 1-bit image whose pixel data lies past the first 64 KiB: read from a path, the decoder got
    the header-only prefix of the file -> numpy ValueError instead of pixels."""
    bits = np.random.default_rng(0).integers(0, 2, (1024, 1024), dtype=np.uint8)
    ds = dataset(pixels=bits, BitsAllocated=1, BitsStored=1, HighBit=0)
    ds.PixelData = np.packbits(bits, bitorder="little").tobytes()
    data = encode(ds)
    for source in both(tmp_path, data):
        np.testing.assert_array_equal(read_dicom(source, stage="stored").pixels, bits)
    path = write(tmp_path, data[:100_000], "cut.dcm")
    expect(path, match=r"truncated: 131072 bytes needed", header=False)


def test_big_endian_byte_pixels_in_ow_over_64_kib_from_path(tmp_path):
    pixels = (np.arange(300 * 300) % 251).astype(np.uint8).reshape(300, 300)
    ds = dataset(ExplicitVRBigEndian, pixels=pixels, BitsAllocated=8, BitsStored=8, HighBit=7)
    ds.PixelData = pixels.reshape(-1, 2)[:, ::-1].tobytes()  # OW: bytes swapped in pairs
    ds["PixelData"].VR = "OW"
    data = encode(ds)
    for source in both(tmp_path, data):
        np.testing.assert_array_equal(read_dicom(source, stage="stored").pixels, pixels)


# --- byte input: buffers of several types -----------------------------------------------------

@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_buffer_types(files, kind):
    np.testing.assert_array_equal(read_dicom(kind(files["explicit"]), stage="stored").pixels, PIXELS)
    for bad, match in [(files["explicit"][:700], r"truncated"), (b"\x89PNG\r\n\x1a\n" * 4, r"not DICOM"),
                       (set_short_length(files["explicit"], PATIENT_ID, "LO", 0xFFF0), r"truncated")]:
        expect(kind(bad), match=match)


def with_us(data: bytes, tag: int, value: int) -> bytes:
    return replace_element(data, tag, "US", element(tag, "US", struct.pack("<H", value)))


@pytest.mark.parametrize("syntax", [RLELossless, "1.2.840.10008.1.2.1.98"], ids=["rle", "encapsulated-uncompressed"])
def test_bit_packed_encapsulated_frames(tmp_path, files, syntax):
    """Found by fuzzing: Bits Allocated 1 in an RLE file decoded one segment, then asked _C for a
    1-bit PixelFormat -> ValueError from the binding instead of DicomError."""
    data = with_us(with_us(files["rle"], 0x00280100, 1), 0x00280101, 1)
    data = with_pixel_element(data, encapsulated([rle_frame([packbits_literal(bytes(ROWS * COLUMNS))])]))
    data = set_transfer_syntax(data, syntax)
    for source in both(tmp_path, data):
        expect(source, match=r"Bits Allocated 1 \(bit-packed frames\) is not supported", header=False)


@pytest.mark.parametrize("padding", [("UV", struct.pack("<Q", 2**64 - 1)), ("FD", struct.pack("<d", 1e300)),
                                     ("FD", struct.pack("<d", -1e300)), ("SV", struct.pack("<q", -2**63))],
                         ids=["UV max", "FD 1e300", "FD -1e300", "SV min"])
def test_padding_value_outside_int64(tmp_path, files, padding):
    """Found by code review: a Pixel Padding Value past int64 (a UV or FD element) reached
    _C.stored_range as a Python int -> TypeError. It matches no stored value, or all of them."""
    vr, value = padding
    data = insert_before_pixels(files["explicit"], element(0x00280120, vr, value))
    for source in both(tmp_path, data):  # no stored value is padding: plain min-max
        np.testing.assert_allclose(read_dicom(source, stage="display").pixels, PIXELS / PIXELS.max(), rtol=1e-6)


def test_padding_range_covering_everything(tmp_path, files):
    data = insert_before_pixels(files["explicit"], element(0x00280120, "FD", struct.pack("<d", -1e300))
                                + element(0x00280121, "FD", struct.pack("<d", 1e300)))
    for source in both(tmp_path, data):
        np.testing.assert_array_equal(read_dicom(source, stage="display").pixels, 0)


# --- the native API refuses sizes that overflow -----------------------------------------------

def test_native_counts_that_overflow(tmp_path, files):
    """Found by code review: count * bytes per value wrapped around to a small size, passed the
    buffer checks, and the kernels ran 2^63 values over a 2-value buffer -> segfault or hang."""
    fmt = _C.PixelFormat(bits_allocated=16, bits_stored=12)
    lut = np.zeros(4, np.float32)
    path = write(tmp_path, files["explicit"])
    calls = [
        lambda: _C.unpack_stored(b"\0" * 4, 0, np.zeros(2, np.uint16), 2**63, fmt),
        lambda: _C.map_stored(b"\0" * 4, 0, np.zeros(2, np.float32), 2**63, fmt, lut, 0),
        lambda: _C.stored_range(b"\0" * 4, 0, 2**63, fmt),
        lambda: _C.read_stored(path, 0, np.zeros(2, np.uint16), 2**63, fmt),
        lambda: _C.read_mapped(path, 0, np.zeros(2, np.float32), 2**62, fmt, lut, 0),
        lambda: _C.decode_rle_frame(b"\0" * 64, np.zeros(2, np.uint8), 2**32, 2**32, 1, 1),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="overflow"):
            call()
    with pytest.raises(ValueError, match=r"too short for 3 values at offset 0"):
        _C.unpack_stored(b"\0" * 4, 0, np.zeros(3, np.uint16), 3, fmt)
    with pytest.raises(ValueError, match=r"dst holds 4 bytes, 6 needed"):
        _C.unpack_stored(b"\0" * 6, 0, np.zeros(2, np.uint16), 3, fmt)


# --- compressed codestreams whose own header disagrees with the file ---------------------------

J2K_SIZ = b"\xff\x4f\xff\x51"
JPEG_LS_SOF = b"\xff\xf7"


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless], ids=["jpeg2000", "jpeg-ls"])
def test_codestream_claiming_a_huge_image(tmp_path, syntax):
    """Found by fuzzing: a JPEG 2000 frame whose SIZ marker says 256×4195328 (the file says
    1024×256) made OpenJPEG allocate 6 GiB before failing. The declared size is now checked
    against Rows and Columns before any decoder runs."""
    pixels = (np.arange(64 * 64, dtype=np.uint16) * 21 % 4096).reshape(64, 64)  # OpenJPEG wants >= 64
    ds = dataset(pixels=pixels)
    ds.compress(syntax, generate_instance_uid=False)
    data = encode(ds)
    for source in both(tmp_path, data):
        np.testing.assert_array_equal(read_dicom(source, stage="stored").pixels, pixels)
    (_, offset, length), = _C.parse(data)["fragments"]
    if syntax == JPEG2000Lossless:
        at = data.index(J2K_SIZ, offset) + 12  # Ysiz, 32 bits
        huge = data[:at] + struct.pack(">I", 4195328) + data[at + 4:]
        claimed = 4195328
    else:
        at = data.index(JPEG_LS_SOF, offset) + 5  # Y, 16 bits
        huge = data[:at] + struct.pack(">H", 65535) + data[at + 2:]
        claimed = 65535
    for source in both(tmp_path, huge):
        expect(source, match=rf"frame 0 is a {claimed}×64 codestream, but the file has 64 rows × 64 columns",
               header=False)
