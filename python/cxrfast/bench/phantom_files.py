"""The DICOM radiographs the reading and loading benchmarks share: distinct 12-bit phantoms
(alternately MONOCHROME1 and MONOCHROME2, with a window and a rescale), written once per
workspace, so that neither the page cache of one file nor memoisation flatters a figure."""

from __future__ import annotations

from pathlib import Path

from cxrfast.bench.case import Workspace
from cxrfast.data.synthetic import make_phantom, to_stored
from cxrfast.io.dicom_writer import write_dicom

BITS = 12


def write_radiographs(directory: Path, count: int, transfer_syntax: str, rows: int, columns: int) -> list[str]:
    paths = []
    for i in range(count):
        phantom = make_phantom(seed=1000 + i, rows=rows, columns=columns)
        photometric = "MONOCHROME1" if i % 2 else "MONOCHROME2"
        path = directory / f"{transfer_syntax}_{i:03d}.dcm"
        write_dicom(path, to_stored(phantom.image, BITS, photometric), transfer_syntax=transfer_syntax,
                    bits_stored=BITS, photometric_interpretation=photometric, window=(2048.0, 3500.0),
                    rescale=(1.0, 0.0), seed=i)
        paths.append(str(path))
    return paths


def radiograph_folder(workspace: Workspace, transfer_syntax: str, count: int, rows: int, columns: int) -> Path:
    """A folder holding `count` radiographs in this transfer syntax, written on first use."""
    key = ("radiographs", transfer_syntax, count, rows, columns)

    def write() -> Path:
        directory = workspace.directory(f"{transfer_syntax}-{count}-{rows}x{columns}")
        write_radiographs(directory, count, transfer_syntax, rows, columns)
        return directory

    return workspace.shared(key, write)
