"""`DaliLoader`: DICOM files, PNG/JPEG or the prepared cache to batches through an NVIDIA DALI
pipeline, on a GPU (`device="cuda"`) or with CPU operators only (`device="cpu"`, no GPU needed).

DALI has no DICOM reader. Headers are parsed by cxrfast's C++ parser in the pipeline's Python
workers (`dali_samples`), JPEG 2000 / HTJ2K codestreams go to `fn.decoders.image` (`mixed` on a
GPU), everything else is read to pixels on the CPU; from there the display transform (rescale,
window or min-max, inversion, padding), the resize and the SSL augmentations are DALI operators.

DALI's decoder converts values to "the dynamic range of the requested type", and what that means
for a given precision is up to each decoder (on the CPU an 8-bit codestream comes back × 257, a
12-bit one unscaled; the GPU's need not agree). `calibrate_decoder` measures it per device and
precision on codestreams of known values, and each image's program undoes it, so CPU and GPU
give the same display values.

Requires the `dali` extra (`pip install cxrfast[dali]`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import torch
import torch.distributed as dist

from cxrfast.data.augment import Crops, ViewAugment
from cxrfast.data.batch import Batch
from cxrfast.data.dali_samples import PipelineSamples
from cxrfast.errors import DataError

# DALI's CPU JPEG 2000 decoder is OpenCV's, which logs a warning for every codestream without a
# colour space (all of DICOM's, which are grey): the decoder probe alone printed dozens. Errors
# still show; a user's own setting wins.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

try:
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def
except ImportError as e:  # the extra is optional; say how to get it where it is needed
    raise ImportError("cxrfast.data.dali needs NVIDIA DALI: pip install 'cxrfast[dali]' "
                      "(nvidia-dali-cuda130)") from e

_TINY_SPAN = 1e-20  # an image of one value: all 0 (or all 1 inverted), as `read_dicom` shows it
_PADDING_SHIFT = 3.0e38  # moves padding out of the min-max reductions (float32 max is 3.4e38)
_PRECISIONS = range(8, 17)  # OpenCV, DALI's CPU JPEG 2000 decoder, rejects precisions below 8


def _device_id(device: str) -> int | None:
    if device == "cpu":
        return None
    if device == "cuda" or device.startswith("cuda:"):
        return torch.device(device).index or 0
    raise ValueError(f"device must be 'cpu' or 'cuda[:N]', not {device!r}")


@lru_cache(maxsize=None)
def calibrate_decoder(device: str = "cpu") -> dict[int, float]:
    """{bits: the value DALI's decoder on `device` returns for a `bits`-precision JPEG 2000
    codestream holding 2^bits − 1}, for bits 8..16. Other precisions are left out
    (their images are then read on the CPU)."""
    import openjpeg

    codestreams = []
    for bits in _PRECISIONS:
        pixels = np.zeros((64, 64), np.uint16 if bits > 8 else np.uint8)
        pixels[0, 0] = (1 << bits) - 1
        codestreams.append(np.frombuffer(openjpeg.encode(pixels, bits_stored=bits), np.uint8))
    decode_device = "cpu" if device == "cpu" else "mixed"

    @pipeline_def(batch_size=len(codestreams), num_threads=1, device_id=_device_id(device))
    def probe():
        data = fn.external_source(source=lambda: codestreams, batch=True, dtype=types.UINT8)
        return fn.decoders.image(data, device=decode_device, dtype=types.UINT16, output_type=types.ANY_DATA)

    pipe = probe()
    pipe.build()
    (decoded,) = pipe.run()
    decoded = decoded.as_cpu() if hasattr(decoded, "as_cpu") else decoded
    return {bits: float(np.asarray(decoded[k])[0, 0, 0]) for k, bits in enumerate(_PRECISIONS)
            if np.asarray(decoded[k])[0, 0, 0] > 0}


def display_values(codestream, pixels, encoded, program, decode_device: str):
    """The DALI graph of `dali_samples`' display formula: float32 rows × columns × 1 in [0, 1].
    Branches test `program` on the CPU (DALI's conditions must be CPU data); the arithmetic reads
    its copy on the pixels' device."""
    if encoded:
        x = fn.decoders.image(codestream, device=decode_device, dtype=types.UINT16, output_type=types.ANY_DATA)
    else:
        x = pixels if decode_device == "cpu" else pixels.gpu()
    p = program if decode_device == "cpu" else program.gpu()
    x = fn.cast(x, dtype=types.FLOAT)
    if program[0] != 1.0:  # undo the decoder's range scaling (an 8-bit codestream on the CPU)
        x = dmath.floor(x * p[0] + 0.5)
    if program[4] > 0.5:  # min-max of the non-padding values
        shift = fn.cast((x >= p[6]) & (x <= p[7]), dtype=types.FLOAT) * _PADDING_SHIFT
        x0, high = fn.reductions.min(x + shift), fn.reductions.max(x - shift)
        gain = p[5] / dmath.max(high - x0, _TINY_SPAN)
        offset = fn.cast(p[5] < 0.0, dtype=types.FLOAT)
    else:
        x0, gain, offset = p[1], p[2], p[3]
    y = dmath.clamp((x - x0) * gain + offset, 0.0, 1.0)
    if program[6] <= program[7]:  # Pixel Padding Value / Range Limit present
        y = y * fn.cast((x < p[6]) | (x > p[7]), dtype=types.FLOAT)
    return y


def center_view(images, size: tuple[int, int] | None):
    """The deterministic view: scaled so that `size` fits inside, then the centred crop (the same
    region as `augment.resize_center`, with DALI's antialiased linear filter); None: as they are."""
    if size is None:
        return images
    images = fn.resize(images, size=size, mode="not_smaller", antialias=True, interp_type=types.INTERP_LINEAR)
    return fn.crop(images, crop=size, out_of_bounds_policy="trim_to_shape")


def augmented_view(images, augment: ViewAugment):
    """One random view with `ViewAugment`'s parameters, as DALI operators. Rotated corners are
    filled with 0 (DALI's rotate has no border mode), where the torch path repeats the border."""
    view = fn.random_resized_crop(images, size=augment.size, random_area=augment.scale,
                                  random_aspect_ratio=augment.ratio, antialias=True,
                                  interp_type=types.INTERP_LINEAR)
    if augment.rotation > 0:
        view = fn.rotate(view, angle=fn.random.uniform(range=(-augment.rotation, augment.rotation)),
                         keep_size=True, fill_value=0.0, interp_type=types.INTERP_LINEAR)
    if augment.hflip > 0:
        view = fn.flip(view, horizontal=fn.random.coin_flip(probability=augment.hflip))
    if augment.brightness > 0:
        view = view + fn.random.uniform(range=(-augment.brightness, augment.brightness))
    if augment.contrast > 0:
        mean = fn.reductions.mean(view)
        view = (view - mean) * fn.random.uniform(range=(1 - augment.contrast, 1 + augment.contrast)) + mean
    view = dmath.clamp(view, 0.0, 1.0)
    if augment.gamma > 0:
        view = dmath.pow(view, dmath.exp(fn.random.uniform(range=(-augment.gamma, augment.gamma))))
    if augment.blur > 0:
        if fn.random.coin_flip(probability=augment.blur):  # a per-sample branch
            sigma = fn.random.uniform(range=augment.blur_sigma)
            view = fn.gaussian_blur(view, sigma=sigma, window_size=2 * math.ceil(3 * augment.blur_sigma[1]) + 1)
    return view


class DaliLoader:
    """Batches from `data` (a folder or manifest of DICOM/PNG/JPEG, or a prepared cache) through
    DALI, as a plain iterable with a length: each epoch yields `len(self)` `Batch`es of the
    views `crops` ask for, float32 tensors (batch, 1, *augment.size) on `device`, or of one
    deterministic view per image at `size` when `crops` is None (with `size=None`, the display
    values at their own size: images of one batch must then share it).

    The order matches `EpochLoader`'s: this rank's `DistributedSampler` shard of a shuffle by
    (seed, epoch), whole batches only. `state_dict()` holds the epoch and the batches done in it;
    a loader given it continues with the next batch of the same order (DALI's random operators
    draw from the pipeline seed, not from that state, so augmentations are not replayed).
    """

    def __init__(self, data: str | os.PathLike, batch_size: int, *, size: int | tuple[int, int] | None = 224,
                 crops: list[Crops] | tuple[Crops, ...] | None = None, device: str = "cpu", workers: int = 2,
                 threads: int = 2, shuffle: bool = True, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None):
        grouped = dist.is_available() and dist.is_initialized()
        self.world_size = world_size if world_size is not None else (dist.get_world_size() if grouped else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if grouped else 0)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in a world of {self.world_size}")
        if crops is not None and (not crops or not all(isinstance(c, Crops) for c in crops)):
            raise ValueError(f"crops must be a non-empty list of Crops, not {crops!r}")
        self.data, self.batch_size, self.device = data, batch_size, device
        self.size = (size, size) if isinstance(size, int) else size and tuple(size)
        self.crops = None if crops is None else list(crops)
        self.workers, self.threads, self.shuffle, self.seed = workers, threads, shuffle, seed
        self.device_id = _device_id(device)
        self.epoch, self.batch = 0, 0
        self._pipe = None
        # Finds and checks the data once, before any DALI work; the pipeline's workers get a copy.
        self._samples = PipelineSamples(data, batch_size=batch_size, shuffle=shuffle, seed=seed, rank=self.rank,
                                        world_size=self.world_size)

    def __len__(self) -> int:
        return self._samples.batches_per_epoch()

    def _build(self):
        samples = self._samples
        samples.start_epoch, samples.start_batch = self.epoch, self.batch  # where the sources begin
        samples.decoder_scales = calibrate_decoder(self.device)
        decode_device = "cpu" if self.device_id is None else "mixed"
        crops, size = self.crops, self.size

        @pipeline_def(batch_size=self.batch_size, num_threads=self.threads, device_id=self.device_id,
                      seed=self.seed + 7919 * self.rank, enable_conditionals=True, py_num_workers=self.workers,
                      py_start_method="spawn", prefetch_queue_depth=2)
        def pipeline():
            codestream, pixels, encoded, program = fn.external_source(
                source=samples, num_outputs=4, batch=False, parallel=True, layout=[None, "HWC", None, None],
                dtype=[types.UINT8, types.UINT16, types.BOOL, types.FLOAT])
            images = display_values(codestream, pixels, encoded, program, decode_device)
            outputs = [center_view(images, size)] if crops is None else \
                [augmented_view(images, c.augment) for c in crops for _ in range(c.count)]
            return tuple(fn.transpose(view, perm=[2, 0, 1]) for view in outputs)

        pipe = pipeline()
        pipe.build()
        return pipe

    def __iter__(self) -> Iterator[Batch]:
        if self._pipe is None:
            self._pipe = self._build()
        while self.batch < len(self):
            try:
                outputs = self._pipe.run()
            except StopIteration:
                raise
            except Exception as e:  # DALI raises bare Exceptions; the pipeline is unusable after one
                self._pipe = None
                raise DataError(self._failure(e)) from e
            self.batch += 1
            yield Batch([_to_torch(output, self.device) for output in outputs])
        try:  # the source's StopIteration ends DALI's epoch; then the next one can start
            self._pipe.run()
            raise RuntimeError("the DALI source yielded more batches than an epoch holds")
        except StopIteration:
            self._pipe.reset()
        self.epoch, self.batch = self.epoch + 1, 0

    def _failure(self, error: Exception) -> str:
        """What failed, naming files: a source's own error already does (it arrives as the cause);
        a decoder's names only the sample, so list the batch's files."""
        if error.__cause__ is not None:
            return str(error.__cause__)
        order = self._samples.order(self.epoch)[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
        names = ", ".join(self._samples.name(i) for i in order)
        detail = next((line.strip() for line in str(error).splitlines() if "Failed to decode" in line),
                      str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__)
        return f"DALI failed on batch {self.batch} of epoch {self.epoch} ({names}): {detail}"

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state.get("batch", 0))
        self._pipe = None  # rebuilt, its sources starting from the new position


def _to_torch(output, device: str) -> torch.Tensor:
    """A DALI batch as a torch tensor that owns its memory (DALI reuses its buffers), by DLPack."""
    if not output.is_dense_tensor():
        shapes = sorted({tuple(s) for s in output.shape()})
        raise DataError(f"a batch holds images of different sizes {shapes[:4]}: give the loader a size")
    return torch.from_dlpack(output.as_tensor()).to(device, copy=True)
