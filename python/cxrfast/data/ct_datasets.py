"""Downstream CT slice sets as their users have them, turned into labelled manifests that
`cxrfast prepare` and `cxrfast finetune` take (a `path` column, `patient_id`, one 0/1 column
per class, `split` as train / validate / test), without any download:

- class folders with split lists, the COVID-CT layout (Zhao et al., 2020; study d's COVID task):
  `CT_COVID/` and `CT_NonCOVID/` of PNG/JPEG slices and `trainCT_COVID.txt`,
  `valCT_COVID.txt`, `testCT_COVID.txt` (and NonCOVID's) naming each split's files; the manifest
  has one `COVID` column;
- split folders of class folders (`train/<class>/`, `val/<class>/`, `test/<class>/`), the layout
  of Wolf et al.'s brain-haemorrhage set; one column per class;
- MedMNIST's `.npz` arrays (`train_images`, `train_labels`, `val_...`, `test_...`; study d's
  OrganSMNIST), written out as 8-bit PNGs beside the manifest; one column per class, or the
  label columns themselves for multi-label sets.

Every image on disk must be in a split and every listed name on disk: anything else is an error
naming it, so nothing is left out unreported. COVID-CT's and the folders' files carry no patient
identifiers, so each slice is its own patient; their official splits are kept as they are.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_text_atomically
from cxrfast.errors import DataError
from cxrfast.io.png_writer import write_png

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
COVID_CLASSES = {"CT_COVID": 1, "CT_NonCOVID": 0}
# The names sets use for their parts, and cxrfast's.
PARTS = {"train": "train", "val": "validate", "valid": "validate", "validate": "validate", "validation": "validate",
         "test": "test"}


def _write(out: Path, columns: list[str], rows: list[list]) -> Path:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "patient_id", *columns, "split"])
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(out, text.getvalue())


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _found(root: Path, name: str, folder: bool) -> Path:
    matches = sorted(p for p in [root, *root.rglob(name)] if p.name == name and (p.is_dir() if folder else p.is_file()))
    if not matches:
        raise DataError(f"{root}: no {name}{'/' if folder else ''} in it; give the COVID-CT folder")
    return matches[0]


def write_covid_ct_manifest(root: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """The COVID-CT manifest (by default `root/covid_ct.csv`, paths relative to its folder)."""
    root = Path(root)
    out = root / "covid_ct.csv" if out is None else Path(out)
    rows = []
    for folder_name, label in COVID_CLASSES.items():
        folder = _found(root, folder_name, folder=True)
        on_disk = {p.name: p for p in _images(folder)}
        listed: dict[str, str] = {}
        for part in ("train", "val", "test"):
            lists = _found(root, f"{part}{folder_name}.txt", folder=False)
            for line, name in enumerate(lists.read_text(encoding="utf-8").splitlines(), start=1):
                name = name.strip()
                if not name:
                    continue
                if name not in on_disk:
                    raise DataError(f"{lists}: line {line}: {name} is not in {folder}")
                if name in listed:
                    raise DataError(f"{lists}: line {line}: {name} is already in the {listed[name]} split")
                listed[name] = PARTS[part]
        unlisted = sorted(set(on_disk) - set(listed))
        if unlisted:
            raise DataError(f"{folder}: {len(unlisted)} images are in no split list: {', '.join(unlisted[:5])}")
        base = Path(os.path.relpath(folder, out.parent))
        rows += [[(base / name).as_posix(), f"{folder_name}/{Path(name).stem}", label, part]
                 for name, part in sorted(listed.items())]
    return _write(out, ["COVID"], rows)


def write_split_folders_manifest(root: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """The manifest of `root/<split>/<class>/` images (by default `root/manifest.csv`)."""
    root = Path(root)
    out = root / "manifest.csv" if out is None else Path(out)
    parts = {p: PARTS[p.name.lower()] for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower() in PARTS}
    if "train" not in parts.values():
        raise DataError(f"{root}: no train/ folder of class folders (with val/ and test/ beside it)")
    stray = sorted(p.name for p in root.iterdir() if p.is_dir() and p not in parts)
    if stray:
        raise DataError(f"{root}: folders {', '.join(stray)} are not a split (train, val, test)")
    classes = sorted({c.name for part in parts for c in part.iterdir() if c.is_dir()})
    if not classes:
        raise DataError(f"{root}: the split folders hold no class folders")
    rows = []
    for part, split in parts.items():
        loose = [p.name for p in part.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            raise DataError(f"{part}: images outside a class folder: {', '.join(sorted(loose)[:5])}")
        for name in classes:
            for image in _images(part / name) if (part / name).is_dir() else []:
                path = Path(os.path.relpath(image, out.parent)).as_posix()
                rows.append([path, image.relative_to(root).with_suffix("").as_posix(),
                             *(int(c == name) for c in classes), split])
    return _write(out, classes, rows)


def write_medmnist_manifest(npz: str | os.PathLike, out: str | os.PathLike,
                            classes: list[str] | None = None) -> Path:
    """Each image of a MedMNIST `.npz` as `out/images/<split>/<index>.png` and the manifest
    `out/<name>.csv`. Labels (N, 1) are classes (one 0/1 column each, named by `classes` or
    class_0, class_1, ...); (N, C) with C > 1 are already C label columns."""
    npz, out = Path(npz), Path(out)
    try:
        arrays = np.load(npz)
    except (OSError, ValueError) as e:
        raise DataError(f"{npz}: not a NumPy .npz archive ({e})") from None
    with arrays:
        found = [p for p in ("train", "val", "test") if f"{p}_images" in arrays and f"{p}_labels" in arrays]
        if "train" not in found:
            raise DataError(f"{npz}: no train_images and train_labels arrays; found {', '.join(arrays.files)}")
        data = {p: (arrays[f"{p}_images"], arrays[f"{p}_labels"]) for p in found}
    widths = {labels.reshape(len(labels), -1).shape[1] for _, labels in data.values()}
    if len(widths) != 1:
        raise DataError(f"{npz}: the splits' labels differ in width ({sorted(widths)})")
    width = widths.pop()
    top = max(int(labels.max()) for _, labels in data.values())
    count = top + 1 if width == 1 else width
    names = classes or [f"class_{k}" for k in range(count)]
    if len(names) != count:
        raise DataError(f"{npz}: {count} classes, but {len(names)} class names were given")
    rows = []
    for part, (images, labels) in data.items():
        labels = labels.reshape(len(labels), -1).astype(np.int64)
        if len(images) != len(labels) or images.ndim not in (3, 4) or images.dtype != np.uint8:
            raise DataError(f"{npz}: {part}_images must be uint8 (N, H, W[, 3]) with one label row per image")
        if labels.min() < 0 or (width > 1 and labels.max() > 1):
            raise DataError(f"{npz}: {part}_labels hold values outside the classes or 0/1")
        folder = out / "images" / part
        folder.mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            grey = image if image.ndim == 2 else np.rint(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
            path = write_png(folder / f"{i:06d}.png", grey)
            onehot = np.eye(count, dtype=np.int64)[label[0]] if width == 1 else label
            rows.append([path.relative_to(out).as_posix(), f"{part}-{i:06d}", *onehot.tolist(), PARTS[part]])
    return _write(out / f"{npz.stem}.csv", names, rows)
