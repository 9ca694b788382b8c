"""`cxrfast prepare --ct lung` of a CT archive against the pydicom loop a user would write for the
same result. Two synthetic chest CT series (cxrfast.data.synthetic_ct), 300 slices of 512² each,
signed 16-bit under Rescale Slope/Intercept with padding, files shuffled; each slice read, turned
into HU, shown through the lung window (W1500/L−600, padding as −1024 HU) and halved to 256².
The baseline (pydicom's dcmread and apply_modality_lut, the window in numpy, a 2 × 2 block mean)
writes nothing and orders nothing; cxrfast also reads every header first to order the series and
writes the cache. One round is the whole archive; slices/s from pytest-benchmark's median."""

from __future__ import annotations

import itertools

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from cxrfast.data.ct_display import CTDisplay
from cxrfast.data.ct_slices import CTSlices
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.synthetic_ct import synthetic_ct, write_ct_series

SERIES, SLICES, SIZE = 2, 300, 512
LEVEL, WIDTH = -600.0, 1500.0


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct-archive")
    for k in range(SERIES):
        write_ct_series(root / f"series{k}", synthetic_ct(SLICES, SIZE, seed=k), shuffle=True, seed=k,
                        patient_id=f"CT-{k}")
    return root


def _pydicom_loop(paths):
    for path in paths:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
        hu = np.where(stored == ds.PixelPaddingValue, -1024.0, apply_modality_lut(stored, ds))
        shown = np.clip((hu - (LEVEL - WIDTH / 2)) / WIDTH, 0, 1)
        half = shown.reshape(SIZE // 2, 2, SIZE // 2, 2).mean((1, 3))
        np.rint(half * 65535).astype(np.uint16)


@pytest.mark.parametrize("role,workers", [("cxrfast", 0), ("cxrfast", 2), ("baseline", 0)])
def test_prepare_ct(benchmark, tag, tmp_path, archive, role, workers):
    benchmark.group = f"prepare a CT archive: {SERIES} series × {SLICES} slices of {SIZE}², lung window, to 256²"
    tag(role, SERIES * SLICES, f"cxrfast, {workers or 'no'} worker processes" if role == "cxrfast"
        else "pydicom loop (read, rescale, window, resize)")
    if role == "baseline":
        paths = sorted(archive.rglob("*.dcm"))
        benchmark.pedantic(lambda: _pydicom_loop(paths), rounds=3, warmup_rounds=1, iterations=1)
        return
    runs = itertools.count()
    ct = CTSlices(CTDisplay.parse("lung"))

    def run():
        report = prepare_cache(archive, tmp_path / f"cache{next(runs)}", size=256, workers=workers, ct=ct,
                               progress=False)
        assert report.images == SERIES * SLICES

    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
