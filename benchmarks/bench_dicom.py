"""DICOM reading against pydicom, over many distinct 2500×2048 12-bit phantom radiographs.

One round reads every file once, so neither the page cache of a single file nor memoisation
flatters a number; figures are medians per image. Run: make bench (or make demo).
"""

from __future__ import annotations

from contextlib import contextmanager

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


def _area(image: np.ndarray, size: int) -> torch.Tensor:
    return F.interpolate(torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None], size=(size, size),
                         mode="area")[0, 0]


def _cxrfast(stage):
    return lambda path: read_dicom(path, stage=stage).pixels


def _resized(read, size):
    return lambda path: _area(read(path), size)


# group: [(role, label, read one file, fixture with the files, on one core)]
GROUPS = {
    "stored 2500x2048 uncompressed": [
        ("cxrfast", "cxrfast", _cxrfast("stored"), "raw_files", False),
        ("baseline", "pydicom pixel_array", _pydicom_stored, "raw_files", False),
        ("floor", "plain read of the file", _plain_read, "raw_files", False),
    ],
    "display 2500x2048 uncompressed": [
        ("cxrfast", "cxrfast", _cxrfast("display"), "raw_files", False),
        ("baseline", "pydicom modality+VOI+inversion", _pydicom_display, "raw_files", False),
    ],
    "stored 2500x2048 RLE": [
        ("cxrfast", "cxrfast", _cxrfast("stored"), "rle_files", False),
        ("baseline", "pydicom native RLE", _pydicom_rle, "rle_files", False),
    ],
    **{f"decode+display+area resize to {size}, 1 core": [
        ("cxrfast", "cxrfast", _resized(_cxrfast("display"), size), "raw_files", True),
        ("baseline", "pydicom chain + torch area resize", _resized(_pydicom_display, size), "raw_files", True),
    ] for size in (224, 512)},
}
CASES = [pytest.param(group, *contender, id=f"{group} | {contender[1]}")
         for group, contenders in GROUPS.items() for contender in contenders]


@contextmanager
def _threads(one_core: bool):
    """Per-core throughput: every library on one thread."""
    saved = torch.get_num_threads(), _C.get_num_threads()
    if one_core:
        torch.set_num_threads(1)
        _C.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        _C.set_num_threads(saved[1])


@pytest.mark.parametrize("group,role,label,read,files,one_core", CASES)
def test_read(benchmark, tag, request, group, role, label, read, files, one_core):
    paths = request.getfixturevalue(files)
    benchmark.group = group
    tag(role, len(paths), label)
    def one_round():
        for path in paths:  # each result is dropped at once, as a data loader would
            read(path)

    with _threads(one_core):
        benchmark.pedantic(one_round, rounds=ROUNDS, warmup_rounds=1, iterations=1)
