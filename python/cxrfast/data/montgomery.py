"""The Montgomery County chest X-ray set (NLM; Jaeger et al., 2014) as a segmentation manifest:
138 PA radiographs in `CXR_png/`, each with its left and right lung drawn as separate binary
PNGs in `ManualMask/leftMask/` and `ManualMask/rightMask/` under the image's file name. The
manifest names the image, its patient (one image each), the union of both masks in `lung_mask`
("left|right", as `cxrfast.data.masks` reads it) and `Tuberculosis` (1 where the name ends in
_1, 0 where in _0), so `cxrfast finetune --task segmentation --data <manifest>` takes it as it is.
An image without both masks is an error naming it: nothing is left out unreported."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from cxrfast.atomic import write_text_atomically
from cxrfast.errors import DataError

IMAGES, LEFT, RIGHT = "CXR_png", "ManualMask/leftMask", "ManualMask/rightMask"
_NAME = re.compile(r"^(?P<patient>MCUCXR_\d+)_(?P<tb>[01])\.png$", re.IGNORECASE)


def write_montgomery_manifest(root: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the manifest (by default `root/montgomery.csv`, paths relative to `root`)."""
    root = Path(root)
    for folder in (IMAGES, LEFT, RIGHT):
        if not (root / folder).is_dir():
            raise DataError(f"{root}: no {folder}/ folder; give the MontgomerySet folder")
    images = sorted(p for p in (root / IMAGES).iterdir() if p.suffix.lower() == ".png")
    if not images:
        raise DataError(f"{root / IMAGES}: no PNG images")
    out = root / "montgomery.csv" if out is None else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "patient_id", "lung_mask", "Tuberculosis"])
    for image in images:
        match = _NAME.match(image.name)
        if match is None:
            raise DataError(f"{image}: not named MCUCXR_<number>_<0|1>.png as the set's images are")
        missing = [side for side in (LEFT, RIGHT) if not (root / side / image.name).is_file()]
        if missing:
            raise DataError(f"{image}: no {' and no '.join(f'{side}/{image.name}' for side in missing)}")
        base = Path(os.path.relpath(root, out.parent))
        writer.writerow([(base / IMAGES / image.name).as_posix(), match["patient"],
                         "|".join((base / side / image.name).as_posix() for side in (LEFT, RIGHT)), match["tb"]])
    return write_text_atomically(out, text.getvalue())
