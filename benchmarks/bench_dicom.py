"""DICOM reading against pydicom, over many distinct 2500×2048 12-bit phantom radiographs.

One round reads every file once, so neither the page cache of a single file nor memoisation
flatters a number; figures are medians per image. Run: make bench (or make demo).
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxrfast import _C
from cxrfast.data.synthetic import make_phantom, to_stored
from cxrfast.io import read_dicom
from cxrfast.io.dicom_writer import write_dicom

ROWS, COLUMNS, BITS = 2500, 2048, 12
N_RAW, N_RLE = 12, 6
ROUNDS = 5


def _write_set(directory, count, transfer_syntax):
    paths = []
    for i in range(count):
        phantom = make_phantom(seed=1000 + i, rows=ROWS, columns=COLUMNS)
        pi = "MONOCHROME1" if i % 2 else "MONOCHROME2"
        path = directory / f"{transfer_syntax}_{i:03d}.dcm"
        write_dicom(path, to_stored(phantom.image, BITS, pi), transfer_syntax=transfer_syntax, bits_stored=BITS,
                    photometric_interpretation=pi, window=(2048.0, 3500.0), rescale=(1.0, 0.0), seed=i)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="session")
def raw_files(tmp_path_factory):
    return _write_set(tmp_path_factory.mktemp("raw"), N_RAW, "explicit")


@pytest.fixture(scope="session")
def rle_files(tmp_path_factory):
    return _write_set(tmp_path_factory.mktemp("rle"), N_RLE, "rle")


def _round(read, paths):
    return lambda: [read(p) for p in paths]


def _run(benchmark, read, paths):
    benchmark.pedantic(_round(read, paths), rounds=ROUNDS, warmup_rounds=1, iterations=1)


def _plain_read(path):
    with open(path, "rb") as f:
        return f.read()


def _pydicom_stored(path):
    return pydicom.dcmread(path).pixel_array


def _pydicom_display(path):
    ds = pydicom.dcmread(path)
    out = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    return out.max() - out if ds.PhotometricInterpretation == "MONOCHROME1" else out


def _pydicom_rle(path):
    ds = pydicom.dcmread(path)
    ds.pixel_array_options(decoding_plugin="pydicom")  # pydicom's own decoder, not a plugin
    return ds.pixel_array


@pytest.mark.benchmark(group="stored 2500×2048 uncompressed")
def test_stored_cxrfast(benchmark, tag, raw_files):
    tag("cxrfast", N_RAW)
    _run(benchmark, lambda p: read_dicom(p, stage="stored"), raw_files)


@pytest.mark.benchmark(group="stored 2500×2048 uncompressed")
def test_stored_pydicom(benchmark, tag, raw_files):
    tag("baseline", N_RAW, "pydicom pixel_array")
    _run(benchmark, _pydicom_stored, raw_files)


@pytest.mark.benchmark(group="stored 2500×2048 uncompressed")
def test_stored_plain_read(benchmark, tag, raw_files):
    tag("floor", N_RAW, "plain read of the file")
    _run(benchmark, _plain_read, raw_files)


@pytest.mark.benchmark(group="display 2500×2048 uncompressed")
def test_display_cxrfast(benchmark, tag, raw_files):
    tag("cxrfast", N_RAW)
    _run(benchmark, lambda p: read_dicom(p, stage="display"), raw_files)


@pytest.mark.benchmark(group="display 2500×2048 uncompressed")
def test_display_pydicom(benchmark, tag, raw_files):
    tag("baseline", N_RAW, "pydicom modality+VOI+inversion")
    _run(benchmark, _pydicom_display, raw_files)


@pytest.mark.benchmark(group="stored 2500×2048 RLE")
def test_rle_cxrfast(benchmark, tag, rle_files):
    tag("cxrfast", N_RLE)
    _run(benchmark, lambda p: read_dicom(p, stage="stored"), rle_files)


@pytest.mark.benchmark(group="stored 2500×2048 RLE")
def test_rle_pydicom(benchmark, tag, rle_files):
    tag("baseline", N_RLE, "pydicom native RLE")
    _run(benchmark, _pydicom_rle, rle_files)


def _area(image: np.ndarray, size: int) -> torch.Tensor:
    return F.interpolate(torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None], size=(size, size),
                         mode="area")[0, 0]


@pytest.fixture
def one_core():
    """Per-core throughput: every library on one thread."""
    threads, native = torch.get_num_threads(), _C.get_num_threads()
    torch.set_num_threads(1)
    _C.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    _C.set_num_threads(native)


@pytest.mark.parametrize("size", [224, 512])
def test_resize_cxrfast(benchmark, tag, raw_files, size, one_core):
    benchmark.group = f"decode+display+area resize to {size}, 1 core"
    tag("cxrfast", N_RAW)
    _run(benchmark, lambda p: _area(read_dicom(p, stage="display").pixels, size), raw_files)


@pytest.mark.parametrize("size", [224, 512])
def test_resize_pydicom(benchmark, tag, raw_files, size, one_core):
    benchmark.group = f"decode+display+area resize to {size}, 1 core"
    tag("baseline", N_RAW, "pydicom chain + torch area resize")
    _run(benchmark, lambda p: _area(_pydicom_display(p), size), raw_files)
