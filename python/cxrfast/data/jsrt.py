"""The JSRT chest radiographs (Shiraishi et al., 2000) and their SCR segmentations (van Ginneken,
Stegmann and Loog, 2006).

JSRT's 247 PA films (154 with a lung nodule, `JPCLN*.IMG`; 93 without, `JPCNN*.IMG`) were
digitised at 2048 × 2048 pixels of 0.175 mm and 12 bits, and are distributed as headerless
`.IMG` files: big-endian uint16, row after row. Their values are "white is zero": a low value is a
bright pixel, as in DICOM's MONOCHROME1. This is checked, not assumed: the maintained JSRT loader
of Idiap's bob.ip.binseg inverts them (`4095 - value`) to match the unofficial PNG version, and published
conversions do the same (ImageJ's raw import with "white is zero", `1 - value/4096`). The display
value is therefore 1 - value/4095, with values above 4095 (no 12-bit scan holds them) at 4095.
A file of any other byte count is a `DataError` naming it, so an Analyze `.img` volume or a
truncated download is never read as a radiograph.

SCR draws each structure of every image as a GIF at 1024 × 1024, half the film's resolution, in
two folds: `fold1/masks/<structure>/<image>.gif` and `fold2/...`, the structures being "left
lung", "right lung", "heart", "left clavicle" and "right clavicle" (observer 1's, the reference).
`cxrfast.data.masks` scales such a mask up by repeating each pixel 2 × 2. SCR's protocol is
two-fold cross-validation, training on one fold and testing on the other.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_text_atomically
from cxrfast.data.masks import SEPARATOR
from cxrfast.errors import DataError

SUFFIX = ".img"
SHAPE = (2048, 2048)
WHITE = 4095  # the 12-bit scale's largest value, the darkest pixel
FOLDS = ("fold1", "fold2")
# manifest column -> the SCR structures whose union it is; lungs are required, the rest written when SCR has them
STRUCTURES = {"lung_mask": ("left lung", "right lung"), "heart_mask": ("heart",),
              "clavicle_mask": ("left clavicle", "right clavicle")}
_NAME = re.compile(r"^JPC(?P<kind>LN|NN)\d{3}$", re.IGNORECASE)


def read_jsrt_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(rows, columns) of a JSRT `.IMG` file, once its byte count shows it is one."""
    path = Path(path)
    expected = SHAPE[0] * SHAPE[1] * 2
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"{path}: not readable ({e})") from e
    if size != expected:
        raise DataError(f"{path}: {size} bytes; a JSRT .IMG image is {expected} "
                        f"({SHAPE[0]}×{SHAPE[1]} big-endian 16-bit values, no header)")
    return SHAPE


def read_jsrt(path: str | os.PathLike) -> np.ndarray:
    """Display values of one JSRT `.IMG` file: float32 (2048, 2048) in [0, 1], bright bone."""
    values = np.fromfile(path, dtype=">u2").reshape(read_jsrt_shape(path))
    return 1.0 - np.minimum(values, WHITE).astype(np.float32) / WHITE


def write_jsrt_manifest(images: str | os.PathLike, scr: str | os.PathLike, out: str | os.PathLike | None = None, *,
                        test_fold: int = 2) -> Path:
    """Write the segmentation manifest of JSRT's `images` folder (All247images) with SCR's masks
    (the folder holding fold1/ and fold2/), by default as `images/jsrt.csv`, paths relative to
    it. Each row names the image, its patient (one image each), `lung_mask` (both lungs),
    `heart_mask` and `clavicle_mask` where SCR has them, `Nodule` (1 for JPCLN, 0 for JPCNN), its
    SCR `fold` and its `split`: "test" in `test_fold`, "train" in the other (validation is then
    carved from training by patient, as for any official split without one). An image without
    masks, or masks without their image, is an error naming it: nothing is left out unreported."""
    images, scr = Path(images), Path(scr)
    if test_fold not in (1, 2):
        raise DataError(f"test_fold must be 1 or 2 (SCR's folds), not {test_fold}")
    if not images.is_dir():
        raise DataError(f"{images}: not a folder; give JSRT's All247images folder")
    films = {p.stem.upper(): p for p in sorted(images.iterdir()) if p.suffix.lower() == SUFFIX}
    if not films:
        raise DataError(f"{images}: no JSRT .IMG images")
    for name, path in films.items():
        if _NAME.match(name) is None:
            raise DataError(f"{path}: not named JPCLN<number>.IMG or JPCNN<number>.IMG as JSRT's images are")
    folds = [scr / fold / "masks" for fold in FOLDS]
    for masks in folds:
        for structure in STRUCTURES["lung_mask"]:
            if not (masks / structure).is_dir():
                raise DataError(f"{scr}: no {masks.relative_to(scr) / structure}/ folder; give SCR's folder "
                                "holding fold1/ and fold2/")
    columns = {column: structures for column, structures in STRUCTURES.items()
               if all((masks / s).is_dir() for masks in folds for s in structures)}
    fold_of = _folds(folds, films, images)
    out = images / "jsrt.csv" if out is None else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "patient_id", *columns, "Nodule", "fold", "split"])
    for name, path in films.items():
        fold = fold_of[name]
        files = []
        for structures in columns.values():
            found = [_mask_file(folds[fold - 1] / s, name) for s in structures]
            missing = [f"{FOLDS[fold - 1]}/masks/{s}/{name}.gif" for s, f in zip(structures, found) if f is None]
            if missing:
                raise DataError(f"{path}: no {' and no '.join(missing)}")
            files.append(SEPARATOR.join(_relative(f, out.parent) for f in found))
        writer.writerow([_relative(path, out.parent), name, *files, int(name[3:5].upper() == "LN"), fold,
                         "test" if fold == test_fold else "train"])
    return write_text_atomically(out, text.getvalue())


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()


def _mask_file(folder: Path, name: str) -> Path | None:
    for suffix in (".gif", ".GIF"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def _folds(folds: list[Path], films: dict[str, Path], images: Path) -> dict[str, int]:
    """Each image's SCR fold (1 or 2), from where its left-lung mask is."""
    fold_of: dict[str, int] = {}
    for number, masks in enumerate(folds, start=1):
        for mask in (masks / STRUCTURES["lung_mask"][0]).iterdir():
            if mask.suffix.lower() != ".gif":
                continue
            name = mask.stem.upper()
            if name not in films:
                raise DataError(f"{mask}: SCR has masks for {name}, but {images} has no {name}.IMG")
            if name in fold_of:
                raise DataError(f"{mask}: {name} is in both of SCR's folds")
            fold_of[name] = number
    missing = sorted(set(films) - set(fold_of))
    if missing:
        raise DataError(f"{films[missing[0]]}: no SCR masks in {' or '.join(map(str, folds))}"
                        + (f" (nor for {len(missing) - 1} more images)" if len(missing) > 1 else ""))
    return fold_of
