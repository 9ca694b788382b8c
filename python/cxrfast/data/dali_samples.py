"""What the DALI pipeline is fed, one image at a time: either a codestream for DALI's decoder or
pixels read on the CPU (uint16 either way), plus the per-image numbers of its display transform.

The display stage of `read_dicom` (rescale, then a LINEAR or LINEAR_EXACT window or the min-max
fallback, then MONOCHROME1 / INVERSE inversion, padding shown as 0) is, for stored values x,

    y = clamp((x − x0) · gain + offset, 0, 1),   0 where low_padding ≤ x ≤ high_padding

with x0 the stored value at the window's lower edge, gain = slope / window span (negated, and
offset 1, when inverted), so DALI evaluates it as one fused expression per pixel
(`DisplayProgram`). Without a window, x0 and the span are the min and max of the non-padding
stored values, measured in the pipeline, and `direction` says which way the result runs. Written
in stored units, a one-value window (LINEAR, width 1: a step) stays exact with a huge gain.

Headers the formula cannot express (a Modality or VOI LUT Sequence, a SIGMOID window, more than
16 bits stored, a zero slope) are displayed on the CPU by `read_dicom` and passed as display
values × 65535 (the prepared cache's own format), as are PNG/JPEG files.

Needs no DALI: the pipeline's parallel `external_source` workers import only this module.
"""

from __future__ import annotations

import os
from dataclasses import astuple, dataclass, replace
from pathlib import Path

import numpy as np
from torch.utils.data import DistributedSampler

from cxrfast.errors import ConfigError, DataError
from cxrfast.io import read_dicom
from cxrfast.io.dicom_header import DicomInfo, ParsedFile, read_parsed
from cxrfast.io.dicom_pixels import codestream, codestream_shape, frame_fragments
from cxrfast.io.dicom_uids import HTJ2K, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, JPEG2000Lossless
from cxrfast.data.prepared_cache import PIXEL_SCALE, PixelEncoding, PreparedCache, is_prepared_cache
from cxrfast.data.sources import NOT_DICOM_SUFFIXES, find_sources, load_image

# JPEG 2000 (lossless, lossy) and HTJ2K (lossless, RPCL, lossy): what `fn.decoders.image` decodes
# on CPU and GPU alike. JPEG-LS and lossless JPEG it does not; baseline JPEG of a radiograph is
# rare enough to read on the CPU with the rest.
DALI_DECODED = frozenset({JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K})
_J2K_SIZ = b"\xff\x4f\xff\x51"
_SSIZ = 42  # from SOC: SIZ marker, Lsiz, Rsiz, eight 32-bit sizes, Csiz, then Ssiz of component 0
_NO_PADDING = (1.0, 0.0)  # an empty interval: no stored value is padding
_SIGNED_SHIFT = 32768  # int16 stored values travel as uint16 + 32768
_TINY_SPAN = 1e-20  # a one-value window: the step the standard defines
_EMPTY_CODESTREAM = np.zeros(1, np.uint8)
_EMPTY_PIXELS = np.zeros((1, 1, 1), np.uint16)


@dataclass(frozen=True)
class DisplayProgram:
    """The per-image numbers of the display formula above, in the order the pipeline reads them."""

    decoded_scale: float = 1.0  # x = round(decoded value × decoded_scale): undoes DALI's scaling
    x0: float = 0.0
    gain: float = 1.0
    offset: float = 0.0
    measure: bool = False  # x0 and the span are the min and max of the non-padding values
    direction: float = 1.0  # with `measure`: +1 rises with x, −1 falls (inverted or negative slope)
    low_padding: float = _NO_PADDING[0]
    high_padding: float = _NO_PADDING[1]

    def array(self) -> np.ndarray:
        return np.array(astuple(self), np.float32)

    def shifted(self, by: float) -> DisplayProgram:
        """The same program for values that arrive `by` higher (signed values as uint16)."""
        return replace(self, x0=self.x0 + by, low_padding=self.low_padding + by,
                       high_padding=self.high_padding + by)


DISPLAY_VALUES = DisplayProgram(gain=1 / PIXEL_SCALE)  # pixels that already are display values × 65535


def display_program(info: DicomInfo) -> DisplayProgram | None:
    """The program that turns this header's stored values into display values, or None where the
    formula cannot; those are displayed on the CPU."""
    slope, intercept = (info.rescale.slope, info.rescale.intercept) if info.rescale else (1.0, 0.0)
    if info.modality_lut is not None or info.voi_lut is not None or info.bits_stored > 16 or slope == 0:
        return None
    padding = (float(info.padding.low), float(info.padding.high)) if info.padding else _NO_PADDING
    common = dict(low_padding=padding[0], high_padding=padding[1])
    sign = -1.0 if info.inverted else 1.0
    w = info.window
    if w is None:
        return DisplayProgram(measure=True, direction=sign * (1.0 if slope > 0 else -1.0), **common)
    if w.function == "LINEAR" and w.width >= 1:  # PS3.3 C.11.2.1.2.1: centre − 0.5, width − 1
        low, span = w.center - 0.5 - (w.width - 1) / 2, w.width - 1
    elif w.function == "LINEAR_EXACT" and w.width > 0:
        low, span = w.center - w.width / 2, w.width
    else:
        return None  # SIGMOID, or a window the standard forbids: read_dicom says which
    return DisplayProgram(x0=(low - intercept) / slope, gain=sign * slope / max(span, _TINY_SPAN),
                          offset=float(info.inverted), **common)


def codestream_precision(data) -> tuple[int, bool]:
    """(bits, signed) of the first component of a JPEG 2000 codestream, from its SIZ marker."""
    head = bytes(data[:1 << 16])
    at = head.find(_J2K_SIZ)
    if at < 0 or len(head) < at + _SSIZ + 1:
        raise ValueError("no JPEG 2000 SIZ marker")
    ssiz = head[at + _SSIZ]
    return (ssiz & 0x7F) + 1, bool(ssiz & 0x80)


@dataclass(frozen=True)
class Sample:
    """One image as the pipeline takes it: `codestream` (uint8, decoded by DALI) when `encoded`,
    else `pixels` (uint16 rows × columns × 1)."""

    codestream: np.ndarray
    pixels: np.ndarray  # uint16
    encoded: bool
    program: DisplayProgram

    def outputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.codestream, self.pixels, np.array(self.encoded), self.program.array()


def dicom_sample(path: str | os.PathLike, decoder_scales: dict[int, float]) -> Sample:
    """A DICOM radiograph as the pipeline takes it. `decoder_scales[bits]`: what the DALI decoder
    multiplies a `bits`-precision codestream's values by (see `calibrate_decoder`)."""
    parsed = read_parsed(path, header_only=True)
    if not parsed.table["has_pixel_data"]:
        raise parsed.fail("no Pixel Data (7FE0,0010): not an image")
    info = parsed.info()
    _check_radiograph(parsed, info)
    program = display_program(info)
    if program is None:
        return _display_sample(read_dicom(path, stage="display").pixels)
    if info.transfer_syntax in DALI_DECODED and not info.is_signed:
        parsed = read_parsed(path, header_only=False)
        data = codestream(parsed, frame_fragments(parsed, info)[0])
        shape = codestream_shape(data)
        if shape != (info.rows, info.columns):
            raise parsed.fail(f"the codestream is {shape[0]}×{shape[1]}, the file has {info.rows} rows × "
                              f"{info.columns} columns" if shape else "no JPEG 2000 size marker in the codestream")
        bits, signed = codestream_precision(data)
        if not signed and bits in decoder_scales:
            scale = ((1 << bits) - 1) / decoder_scales[bits]
            array = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else np.array(data, np.uint8)
            return Sample(array, _EMPTY_PIXELS, True, replace(program, decoded_scale=scale))
    stored = read_dicom(path, stage="stored").pixels
    if info.is_signed:
        return _pixels_sample((stored.astype(np.int32) + _SIGNED_SHIFT).astype(np.uint16),
                              program.shifted(_SIGNED_SHIFT))
    return _pixels_sample(stored, program)


def _check_radiograph(parsed: ParsedFile, info: DicomInfo) -> None:
    if info.frames != 1:
        raise parsed.fail(f"{info.frames} frames; a radiograph has one")
    if info.samples_per_pixel != 1:
        raise parsed.fail(f"{info.photometric_interpretation} with {info.samples_per_pixel} samples per pixel; "
                          "expected a monochrome radiograph")


def _pixels_sample(values: np.ndarray, program: DisplayProgram) -> Sample:
    return Sample(_EMPTY_CODESTREAM, np.asarray(values, np.uint16)[:, :, None], False, program)


def _display_sample(values: np.ndarray) -> Sample:
    return _pixels_sample(np.rint(values * PIXEL_SCALE), DISPLAY_VALUES)


class PipelineSamples:
    """The `external_source` callable of the pipeline (picklable: DALI runs it in worker
    processes). Sample k of epoch e is image `order(e)[k]`, where the order is the one
    `DistributedSampler` gives this rank (shuffled by seed and epoch, drop_last), cut to whole
    batches; the first epoch may start part-way, for a resumed run."""

    def __init__(self, data: str | os.PathLike, *, batch_size: int, shuffle: bool, seed: int, rank: int,
                 world_size: int, start_epoch: int = 0, start_batch: int = 0,
                 decoder_scales: dict[int, float] | None = None):
        self.data = Path(data)
        self.cache = PreparedCache(self.data) if is_prepared_cache(self.data) else None
        if self.cache is not None and self.cache.encoding != PixelEncoding():
            raise ConfigError(f"{self.data}: the DALI pipeline feeds one channel of display values, and this CT cache "
                              f"holds {self.cache.settings['ct']['display']}; read it with cxrfast's torch loader")
        self.paths = None if self.cache is not None else [s.path for s in find_sources(self.data)]
        self.batch_size, self.start_epoch, self.start_batch = batch_size, start_epoch, start_batch
        self.decoder_scales = dict(decoder_scales or {})  # none: every codestream is read on the CPU
        self.sampler = DistributedSampler(range(len(self)), num_replicas=world_size, rank=rank, shuffle=shuffle,
                                          seed=seed, drop_last=True)
        self._order: tuple[int, list[int]] | None = None
        if self.batches_per_epoch() == 0:
            raise DataError(f"{self.data}: {len(self)} images give rank {rank} of {world_size} no batch of "
                            f"{batch_size}")

    def __len__(self) -> int:
        return len(self.cache) if self.cache is not None else len(self.paths)

    def batches_per_epoch(self) -> int:
        return self.sampler.num_samples // self.batch_size

    def order(self, epoch: int) -> list[int]:
        if self._order is None or self._order[0] != epoch:
            self.sampler.set_epoch(epoch)
            self._order = (epoch, list(self.sampler)[: self.batches_per_epoch() * self.batch_size])
        return self._order[1]

    def __call__(self, sample_info) -> tuple[np.ndarray, ...]:
        epoch = self.start_epoch + sample_info.epoch_idx
        position = sample_info.idx_in_epoch + (self.start_batch * self.batch_size if sample_info.epoch_idx == 0 else 0)
        order = self.order(epoch)
        if position >= len(order):
            raise StopIteration
        return self.sample(order[position]).outputs()

    def name(self, index: int) -> str:
        return self.cache.records[index]["name"] if self.cache is not None else str(self.paths[index])

    def sample(self, index: int) -> Sample:
        if self.cache is not None:
            return _pixels_sample(self.cache.pixels(index)[0], DISPLAY_VALUES)
        path = self.paths[index]
        if path.suffix.lower() in NOT_DICOM_SUFFIXES:
            return _display_sample(load_image(path).pixels)
        return dicom_sample(path, self.decoder_scales)
