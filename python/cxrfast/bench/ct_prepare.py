"""`cxrfast prepare --ct lung` of a CT archive against the pydicom loop a user would write for the
same result (part of the "dicom" suite).

Two synthetic chest CT series (`cxrfast.data.synthetic_ct`; 300 slices of 512² each at full
scale), signed 16-bit under Rescale Slope/Intercept with padding, files shuffled; each slice is
read, turned into HU, shown through the lung window (W1500/L−600, padding as −1024 HU) and halved
(to 256² at full scale). The baseline (pydicom's dcmread and apply_modality_lut, the window in
numpy, a 2 × 2 block mean) writes nothing and orders nothing; cxrfast also reads every header
first to order the series and writes the cache. One round is the whole archive; figures are per
slice."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.data.ct_display import CTDisplay
from cxrfast.data.ct_slices import CTSlices
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.synthetic_ct import synthetic_ct, write_ct_series

SUITE = "dicom"
LEVEL, WIDTH = -600.0, 1500.0
PADDING_HU = -1024.0
# series, slices per series, each slice's side (the cache holds them at half of it)
ARCHIVES = {"full": (2, 300, 512), "quick": (2, 60, 512), "tiny": (2, 6, 64)}
WORKERS = (0, 2)  # cxrfast's worker processes, one contender each
ROUNDS = {"full": (3, 1), "quick": (3, 1), "tiny": (1, 0)}  # rounds, warm-ups: each round starts its own pool


def _archive(workspace: Workspace, series: int, slices: int, size: int) -> Path:
    def write() -> Path:
        root = workspace.directory(f"ct-{series}x{slices}x{size}")
        for k in range(series):
            write_ct_series(root / f"series{k}", synthetic_ct(slices, size, seed=k), shuffle=True, seed=k,
                            patient_id=f"CT-{k}")
        return root

    return workspace.shared(("ct archive", series, slices, size), write)


def _pydicom_loop(paths: list[Path], size: int) -> None:
    half = size // 2
    for path in paths:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
        hu = np.where(stored == ds.PixelPaddingValue, PADDING_HU, apply_modality_lut(stored, ds))
        shown = np.clip((hu - (LEVEL - WIDTH / 2)) / WIDTH, 0, 1)
        np.rint(shown.reshape(half, 2, half, 2).mean((1, 3)) * 65535).astype(np.uint16)


def _preparing(archive_sizes: tuple[int, int, int], workers: int | None):
    """cxrfast with `workers` processes, or the pydicom loop with None."""
    series, slices, size = archive_sizes

    def make(workspace: Workspace) -> Step:
        archive = _archive(workspace, series, slices, size)
        if workers is None:
            paths = sorted(archive.rglob("*.dcm"))
            return Step(lambda: _pydicom_loop(paths, size))
        caches = workspace.directory(f"ct-caches-{workers}-workers")
        ct = CTSlices(CTDisplay.parse("lung"))
        rounds = itertools.count()

        def prepare() -> None:  # a fresh cache each round: one already complete would be reused
            report = prepare_cache(archive, caches / f"cache{next(rounds)}", size=size // 2, workers=workers, ct=ct,
                                   progress=False)
            assert report.images == series * slices, f"prepared {report.images} of {series * slices} slices"

        return Step(prepare, close=lambda: shutil.rmtree(caches))

    return make


def cases(scale: str, device: str) -> list[Case]:
    series, slices, size = sizes = ARCHIVES[scale]
    rounds, warmup = ROUNDS[scale]
    group = f"prepare a CT archive: {series} series × {slices} slices of {size}², lung window, to {size // 2}²"
    contenders = [(f"cxrfast, {workers or 'no'} worker processes", "cxrfast", workers) for workers in WORKERS]
    contenders.append(("pydicom loop (read, rescale, window, resize)", "baseline", None))
    return [Case(SUITE, group, label, role, series * slices, _preparing(sizes, workers), rounds=rounds,
                 warmup=warmup, unit="slice") for label, role, workers in contenders]
