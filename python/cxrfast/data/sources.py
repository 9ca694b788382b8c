"""Where a dataset's images are and how one is read: a folder tree of DICOM, PNG (8 or 16 bit),
JPEG and JSRT `.IMG` files, or a manifest CSV naming them.

Every image is read into float32 display values in [0, 1]: DICOM through `read_dicom`'s display
stage (modality LUT, VOI, MONOCHROME1 inversion), PNG and JPEG by their bit depth (255 or
65535 is 1), JSRT's raw films as `cxrfast.data.jsrt` reads them. Colour PNG/JPEG files are
converted to luminance, as a radiograph saved in colour carries nothing else.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cxrfast.data import jsrt
from cxrfast.errors import DataError
from cxrfast.io import read_dicom, read_header

DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
NOT_DICOM_SUFFIXES = RASTER_SUFFIXES + (jsrt.SUFFIX,)  # files read whole by `load_image`, never by a DICOM decoder
_DICM_OFFSET = 128  # the DICOM preamble, then "DICM" (PS3.10 7.1)


@dataclass(frozen=True)
class Source:
    """One image: its path, the name it is known by (relative to the dataset root) and the
    columns a manifest gave it (labels, ids), carried into the prepared cache."""

    path: Path
    name: str
    columns: dict[str, str] = field(default_factory=dict)
    frame: int | None = None  # the frame of a multi-frame file this image is (an enhanced CT slice)


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # float32 (rows, columns) in [0, 1]
    metadata: dict[str, str]


def find_sources(root: str | os.PathLike) -> list[Source]:
    """The images under a folder (sorted by name; DICOM files recognised by suffix or by their
    "DICM" marker when they have none) or those a manifest CSV lists in its `path` column
    (relative to the CSV's folder), in the manifest's order."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return _manifest_sources(root)
    if not root.is_dir():
        raise DataError(f"{root}: neither a folder of images nor a manifest .csv")
    sources = [Source(path, path.relative_to(root).as_posix()) for path in sorted(root.rglob("*"))
               if path.is_file() and _is_image(path)]
    if not sources:
        raise DataError(f"{root}: no DICOM, PNG, JPEG or JSRT .IMG files found")
    return sources


def _is_image(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES + NOT_DICOM_SUFFIXES:
        return True
    if suffix:
        return False
    with open(path, "rb") as f:
        f.seek(_DICM_OFFSET)
        return f.read(4) == b"DICM"


def _manifest_sources(manifest: Path) -> list[Source]:
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise DataError(f"{manifest}: a manifest needs a 'path' column, found {reader.fieldnames}")
        sources, seen = [], set()
        for line, row in enumerate(reader, start=2):
            name = (row.pop("path") or "").strip()
            if not name:
                raise DataError(f"{manifest}: line {line}: empty path")
            if name in seen:
                raise DataError(f"{manifest}: line {line}: {name} is listed twice")
            seen.add(name)
            sources.append(Source(manifest.parent / name, name, {k: v or "" for k, v in row.items()}))
    if not sources:
        raise DataError(f"{manifest}: lists no images")
    return sources


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Display values of one image and what its header says about it (DICOM's Patient ID, View
    Position and UIDs; nothing for PNG, JPEG or JSRT). Raises DicomError or DataError naming the file."""
    path = Path(path)
    if path.suffix.lower() in RASTER_SUFFIXES:
        return LoadedImage(_raster(path), {})
    if path.suffix.lower() == jsrt.SUFFIX:
        return LoadedImage(jsrt.read_jsrt(path), {})
    image = read_dicom(path, stage="display")
    info = image.info
    if info.frames != 1:
        raise DataError(f"{path}: {info.frames} frames; a radiograph has one")
    if image.pixels.ndim != 2:
        raise DataError(f"{path}: {info.photometric_interpretation} with {info.samples_per_pixel} samples per "
                        "pixel; expected a monochrome radiograph")
    return LoadedImage(image.pixels, header_metadata(info))


def header_metadata(info) -> dict[str, str]:
    """What a cache manifest keeps of a DICOM header: Patient ID, View Position and the UIDs."""
    metadata = {"patient_id": info.patient_id, "view_position": info.view_position,
                "study_instance_uid": info.study_instance_uid, "sop_instance_uid": info.sop_instance_uid}
    return {k: v or "" for k, v in metadata.items()}


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(rows, columns) of an image from its header alone (DICOM's Rows and Columns, a raster's size,
    JSRT's fixed one once the file's byte count is checked)."""
    path = Path(path)
    if path.suffix.lower() == jsrt.SUFFIX:
        return jsrt.read_jsrt_shape(path)
    if path.suffix.lower() in RASTER_SUFFIXES:
        try:
            with Image.open(path) as image:
                return image.height, image.width
        except OSError as e:
            raise DataError(f"{path}: not a readable PNG/JPEG ({e})") from e
    info = read_header(path)
    return info.rows, info.columns


def _raster(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I;16"):  # 16-bit grayscale
                return np.asarray(image, dtype=np.float32) / 65535.0
            if image.mode in ("I", "F"):
                raise DataError(f"{path}: {image.mode} (32-bit) pixels have no defined display range")
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except OSError as e:  # PIL's UnidentifiedImageError and truncated files
        raise DataError(f"{path}: not a readable PNG/JPEG ({e})") from e
