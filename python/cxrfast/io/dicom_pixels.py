"""Stored pixel values of chosen frames: native, RLE (C++), and the compressed syntaxes
through pydicom's decoder plugins, to which the native parser hands the codestreams."""

from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np

from cxrfast import _C
from cxrfast.io.dicom_header import DicomInfo, ParsedFile
from cxrfast.io.dicom_uids import EncapsulatedUncompressedExplicitVRLittleEndian, RLELossless

_JPEG_EOI = b"\xff\xd9"  # ends JPEG, JPEG-LS and JPEG 2000 (EOC) codestreams alike
_J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC, then the image and tile size marker
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}  # SOFn, JPEG-LS SOF55


def stored_dtype(info: DicomInfo) -> np.dtype:
    bits = max(8, info.bits_allocated)
    return np.dtype(f"{'i' if info.is_signed else 'u'}{bits // 8}")


def pixel_format(info: DicomInfo, *, swap_bytes: bool = False, clean: bool = False) -> _C.PixelFormat:
    """`clean`: values already unpacked into `stored_dtype`, so there is nothing to mask."""
    bits = stored_dtype(info).itemsize * 8 if clean else info.bits_allocated
    return _C.PixelFormat(bits_allocated=bits, bits_stored=bits if clean else info.bits_stored,
                          is_signed=info.is_signed, swap_bytes=swap_bytes)


def frame_values(info: DicomInfo) -> int:
    return info.rows * info.columns * info.samples_per_pixel


def native_frame_bytes(info: DicomInfo) -> int:
    return frame_values(info) * info.bits_allocated // 8


def check_native_length(parsed: ParsedFile, info: DicomInfo) -> None:
    need = (frame_values(info) * info.frames * info.bits_allocated + 7) // 8
    have = parsed.table["pixel_length"]
    if have < need:
        raise parsed.fail(f"Pixel Data holds {have} bytes, {need} needed for {info.frames} frame(s) of "
                          f"{info.rows}×{info.columns}×{info.samples_per_pixel} at {info.bits_allocated} bits")


def to_interleaved(frames: np.ndarray, info: DicomInfo) -> np.ndarray:
    """(n, values) -> (n, rows, columns[, samples]) with samples last, as pydicom returns them."""
    n = frames.shape[0]
    if info.samples_per_pixel == 1:
        return frames.reshape(n, info.rows, info.columns)
    if info.planar_configuration == 1:
        return np.ascontiguousarray(frames.reshape(n, info.samples_per_pixel, info.rows, info.columns).transpose(0, 2, 3, 1))
    return frames.reshape(n, info.rows, info.columns, info.samples_per_pixel)


def native_stored(parsed: ParsedFile, info: DicomInfo, first: int, count: int) -> np.ndarray:
    """Frames [first, first + count) of native Pixel Data held in the parsed buffer."""
    check_native_length(parsed, info)
    offset = parsed.table["pixel_offset"]
    n = frame_values(info)
    if info.bits_allocated == 1:  # bit-packed, frames not byte aligned, least significant bit first
        data = np.frombuffer(parsed.dataset, np.uint8, count=parsed.table["pixel_length"], offset=offset)
        bits = np.unpackbits(data, bitorder="little")[first * n : (first + count) * n]
        return bits.reshape(count, n)
    out = np.empty((count, n), stored_dtype(info))
    data, start = parsed.dataset, offset + first * native_frame_bytes(info)
    if swapped_ow(parsed, info):
        words = np.frombuffer(data, np.uint8, count=parsed.table["pixel_length"] & ~1, offset=offset)
        data, start = words.view(np.uint16).byteswap().view(np.uint8), first * native_frame_bytes(info)
    swap = not parsed.little_endian and info.bits_allocated > 8
    _C.unpack_stored(data, start, out, count * n, pixel_format(info, swap_bytes=swap))
    return out


def swapped_ow(parsed: ParsedFile, info: DicomInfo) -> bool:
    """8-bit pixels in a big endian OW value: the bytes are swapped in pairs (PS3.5 8.1.1)."""
    return not parsed.little_endian and info.bits_allocated == 8 and parsed.table["pixel_vr"] == "OW"


def frame_fragments(parsed: ParsedFile, info: DicomInfo) -> list[list[tuple[int, int]]]:
    """(offset, length) of the fragments of each frame of encapsulated Pixel Data (PS3.5 A.4)."""
    fragments = parsed.table["fragments"]
    if not fragments:
        raise parsed.fail("encapsulated Pixel Data holds no fragments")
    positions = [position for position, _, _ in fragments]
    eot = parsed.numbers("ExtendedOffsetTable")
    bot = parsed.table["basic_offset_table"]
    starts = eot.tolist() if eot is not None and eot.size else bot
    if starts:
        if len(starts) != info.frames:
            raise parsed.fail(f"offset table lists {len(starts)} frames, Number of Frames is {info.frames}")
        bounds = list(starts) + [positions[-1] + 1]
        frames = [[(o, n) for p, o, n in fragments if bounds[k] <= p < bounds[k + 1]] for k in range(info.frames)]
    elif info.frames == 1:
        frames = [[(o, n) for _, o, n in fragments]]
    elif len(fragments) == info.frames:
        frames = [[(o, n)] for _, o, n in fragments]
    else:  # no table: a frame ends with the fragment whose codestream ends in EOI
        frames, current = [], []
        data = memoryview(parsed.dataset)
        for _, o, n in fragments:
            current.append((o, n))
            tail = bytes(data[o + max(0, n - 3) : o + n]).rstrip(b"\x00")
            if tail.endswith(_JPEG_EOI):
                frames.append(current)
                current = []
        if current or len(frames) != info.frames:
            raise parsed.fail(f"cannot split {len(fragments)} fragments into {info.frames} frames without an offset table")
    if any(not f for f in frames):
        raise parsed.fail("offset table points a frame at no fragment")
    return frames


def codestream(parsed: ParsedFile, pieces: list[tuple[int, int]]) -> bytes | memoryview:
    data = memoryview(parsed.dataset)
    if len(pieces) == 1:
        offset, length = pieces[0]
        return data[offset : offset + length]
    return b"".join(data[o : o + n] for o, n in pieces)


def encapsulated_stored(parsed: ParsedFile, info: DicomInfo, first: int, count: int) -> np.ndarray:
    frames = frame_fragments(parsed, info)
    ts = info.transfer_syntax
    if info.bits_allocated == 1 and ts in (RLELossless, EncapsulatedUncompressedExplicitVRLittleEndian):
        raise parsed.fail(f"Bits Allocated 1 (bit-packed frames) is not supported in transfer syntax {ts}")
    n = frame_values(info)
    out = np.empty((count, n), stored_dtype(info))
    for k in range(count):
        data = codestream(parsed, frames[first + k])
        if ts == RLELossless:
            try:
                _C.decode_rle_frame(data, out[k].view(np.uint8), info.rows, info.columns,
                                    info.samples_per_pixel, out.itemsize)
            except _C.ParseError as e:
                raise parsed.fail(f"frame {first + k}: {e}") from None
            _C.unpack_stored(out[k], 0, out[k], n, pixel_format(info))  # mask / sign-extend in place
        elif ts == EncapsulatedUncompressedExplicitVRLittleEndian:
            if len(data) < native_frame_bytes(info):
                raise parsed.fail(f"frame {first + k} holds {len(data)} bytes, {native_frame_bytes(info)} needed")
            _C.unpack_stored(data, 0, out[k], n, pixel_format(info))
        else:
            out[k] = _decode_plugin(parsed, info, data, first + k).reshape(n)
    return out


def codestream_shape(data) -> tuple[int, int] | None:
    """(rows, columns) that a JPEG, JPEG-LS or JPEG 2000 codestream declares in its SOF or SIZ
    marker; None where there is none to read (the decoder judges those)."""
    head = bytes(data[:1 << 16])
    at = head.find(_J2K_SIZ)
    if at >= 0 and len(head) >= at + 24:
        width, height, x0, y0 = struct.unpack_from(">4I", head, at + 8)
        return height - y0, width - x0
    at = 2 if head.startswith(b"\xff\xd8") else len(head)
    while at + 9 <= len(head) and head[at] == 0xFF:
        marker = head[at + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, standalone markers
            at += 1 if marker == 0xFF else 2
            continue
        if marker in _JPEG_SOF:
            rows, columns = struct.unpack_from(">HH", head, at + 5)
            return (rows, columns) if rows else None  # 0 rows: given later by a DNL marker
        if marker == 0xDA:  # scan data before any frame header
            return None
        at += 2 + struct.unpack_from(">H", head, at + 2)[0]
    return None


def _decode_plugin(parsed: ParsedFile, info: DicomInfo, data, index: int) -> np.ndarray:
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    try:
        decoder = get_decoder(UID(info.transfer_syntax))
    except NotImplementedError:
        raise parsed.fail(f"unsupported Transfer Syntax {info.transfer_syntax}") from None
    if not decoder.is_available:
        missing = ", ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise parsed.fail(f"no decoder for {UID(info.transfer_syntax).name} is installed ({missing})")
    # Checked before decoding: a codestream claiming 256×4195328 made OpenJPEG allocate 6 GiB.
    shape = codestream_shape(data)
    if shape is not None and shape != (info.rows, info.columns):
        raise parsed.fail(f"frame {index} is a {shape[0]}×{shape[1]} codestream, but the file has "
                          f"{info.rows} rows × {info.columns} columns")
    try:
        array, _ = decoder.as_array(
            encapsulate([bytes(data)]), rows=info.rows, columns=info.columns, samples_per_pixel=info.samples_per_pixel,
            bits_allocated=info.bits_allocated, bits_stored=info.bits_stored,
            pixel_representation=info.pixel_representation,
            photometric_interpretation=info.photometric_interpretation, number_of_frames=1,
            planar_configuration=info.planar_configuration, pixel_keyword="PixelData",
        )
    except Exception as e:  # plugins raise anything from ValueError to RuntimeError on bad streams
        raise parsed.fail(f"frame {index} cannot be decoded as {UID(info.transfer_syntax).name}: {e}") from None
    if array.size != frame_values(info):  # e.g. a codestream whose own header disagrees with the file's
        raise parsed.fail(f"frame {index} decodes to {array.size} values as {UID(info.transfer_syntax).name}, "
                          f"{frame_values(info)} expected")
    return array.astype(stored_dtype(info), copy=False)


def decode_stored(parsed: ParsedFile, info: DicomInfo, first: int, count: int) -> np.ndarray:
    """Stored values of frames [first, first + count) as (count, rows, columns[, samples])."""
    if parsed.table["encapsulated"]:
        flat = encapsulated_stored(parsed, info, first, count)
        # Decoders return samples interleaved whatever Planar Configuration says.
        decoded = info.transfer_syntax != EncapsulatedUncompressedExplicitVRLittleEndian
        return to_interleaved(flat, replace(info, planar_configuration=0) if decoded else info)
    return to_interleaved(native_stored(parsed, info, first, count), info)
