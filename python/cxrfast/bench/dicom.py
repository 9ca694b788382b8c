"""DICOM reading against pydicom, over many distinct 12-bit phantom radiographs (2500×2048 at
full scale), and the preparation of a CT archive against pydicom's loop (`cxrfast.bench.ct_prepare`).

One round reads every file once, so neither the page cache of a single file nor memoisation
flatters a figure; figures are per image. The "1 core" groups decode, show and area-resize with
every library on one thread: per-core throughput, as a data loader's workers each see it. Reading
happens on the CPU whatever the device: the GPU gets only the decoded images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxrfast.bench import ct_prepare
from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.bench.phantom_files import radiograph_folder
from cxrfast.io import read_dicom

SUITE = "dicom"
# rows, columns, uncompressed files, RLE files
SIZES = {"full": (2500, 2048, 12, 6), "quick": (1024, 1024, 6, 3), "tiny": (256, 256, 4, 2)}
RESIZES = {"full": (224, 512), "quick": (224, 512), "tiny": (64, 128)}  # the area resize's sides
ROUNDS = {"full": 5, "quick": 5, "tiny": 2}

Read = Callable[[str], object]


def _plain_read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _pydicom_stored(path: str) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def _pydicom_display(path: str) -> np.ndarray:
    ds = pydicom.dcmread(path)
    shown = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    return shown.max() - shown if ds.PhotometricInterpretation == "MONOCHROME1" else shown


def _pydicom_rle(path: str) -> np.ndarray:
    ds = pydicom.dcmread(path)
    ds.pixel_array_options(decoding_plugin="pydicom")  # pydicom's own RLE decoder, not a plugin's
    return ds.pixel_array


def _cxrfast(stage: str) -> Read:
    return lambda path: read_dicom(path, stage=stage).pixels


def _area_resized(read: Read, size: int) -> Read:
    def resized(path: str) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(read(path), np.float32))[None, None]
        return F.interpolate(image, size=(size, size), mode="area")[0, 0]

    return resized


def _reading(read: Read, transfer_syntax: str, count: int, rows: int, columns: int):
    def make(workspace: Workspace) -> Step:
        folder = radiograph_folder(workspace, transfer_syntax, count, rows, columns)
        paths = sorted(str(p) for p in folder.glob("*.dcm"))

        def one_round() -> None:
            for path in paths:  # each result is dropped at once, as a data loader's would be
                read(path)

        return Step(one_round)

    return make


def cases(scale: str, device: str) -> list[Case]:
    rows, columns, uncompressed, rle = SIZES[scale]
    shape = f"{rows}x{columns}"
    files = {"explicit": uncompressed, "rle": rle}
    # group: [(role, label, read one file, transfer syntax of the files)], and whether on one core
    groups = {
        f"stored {shape} uncompressed": ([
            ("cxrfast", "cxrfast", _cxrfast("stored"), "explicit"),
            ("baseline", "pydicom pixel_array", _pydicom_stored, "explicit"),
            ("floor", "plain read of the file", _plain_read, "explicit"),
        ], False),
        f"display {shape} uncompressed": ([
            ("cxrfast", "cxrfast", _cxrfast("display"), "explicit"),
            ("baseline", "pydicom modality+VOI+inversion", _pydicom_display, "explicit"),
        ], False),
        f"stored {shape} RLE": ([
            ("cxrfast", "cxrfast", _cxrfast("stored"), "rle"),
            ("baseline", "pydicom native RLE", _pydicom_rle, "rle"),
        ], False),
        **{f"decode+display+area resize to {size}, 1 core": ([
            ("cxrfast", "cxrfast", _area_resized(_cxrfast("display"), size), "explicit"),
            ("baseline", "pydicom chain + torch area resize", _area_resized(_pydicom_display, size), "explicit"),
        ], True) for size in RESIZES[scale]},
    }
    found = [Case(SUITE, group, label, role, files[syntax], _reading(read, syntax, files[syntax], rows, columns),
                  rounds=ROUNDS[scale], one_thread=one_thread)
             for group, (contenders, one_thread) in groups.items() for role, label, read, syntax in contenders]
    return found + ct_prepare.cases(scale, device)
