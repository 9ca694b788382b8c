"""`prepare --ct` on synthetic CT series: slices cached in series order along the normal whatever
the files' names, with their series, index, position and spacing; the cached values equal the
window's formula over pydicom's Hounsfield units; every k-th slice and the body-share filter with
what they leave out listed; a series that cannot be ordered reported per file; a cache reused
only with the policy it was prepared with; a second run reading nothing."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from cxrfast.cli import main
from cxrfast.data.ct_display import WINDOWS, CTDisplay
from cxrfast.data.ct_slices import CTSlices
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.prepared_cache import PIXEL_SCALE, PreparedCache
from cxrfast.data.synthetic_ct import synthetic_ct, write_ct_series
from cxrfast.errors import ConfigError, DataError

SIZE = 32


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Two shuffled series of one patient each, and a third with a slice missing."""
    root = tmp_path_factory.mktemp("ct")
    volumes, paths = {}, {}
    for k, slices in enumerate((8, 6, 5)):
        volumes[k] = synthetic_ct(slices, SIZE, seed=k, spacing=2.5)
        paths[k] = write_ct_series(root / f"patient{k}", volumes[k], shuffle=True, seed=k,
                                   patient_id=f"CT-{k}")
    paths[2][2].unlink()  # a gap in the third series
    return root, volumes, paths


def test_slices_are_cached_in_order_with_their_window(tmp_path, archive):
    root, volumes, paths = archive
    report = prepare_cache(root, tmp_path / "cache", size=SIZE, workers=0, progress=False,
                           ct=CTSlices(CTDisplay.parse("lung")))
    cache = PreparedCache(report.root)
    assert (report.images, report.errors, report.skipped) == (14, 4, 0)
    for k in (0, 1):  # each series in its volume's order, not its files'
        rows = [(i, r) for i, r in enumerate(cache.records) if r["patient_id"] == f"CT-{k}"]
        assert [r["name"] for _, r in rows] == [f"patient{k}/{p.name}" for p in paths[k]]
        assert [int(r["slice_index"]) for _, r in rows] == list(range(len(paths[k])))
        np.testing.assert_allclose([float(r["slice_position"]) for _, r in rows], volumes[k].z, atol=1e-3)
        assert {r["slice_spacing"] for _, r in rows} == {"2.5000"} and {r["ordered_by"] for _, r in rows} == {
            "position"}
        level, width = WINDOWS["lung"]
        for i, row in rows[::3]:
            ds = pydicom.dcmread(root / row["name"])
            hu = apply_modality_lut(ds.pixel_array, ds)
            hu = np.where(ds.pixel_array == ds.PixelPaddingValue, -1024.0, hu)
            expected = np.clip((hu - (level - width / 2)) / width, 0, 1)
            np.testing.assert_allclose(cache.pixels(i) / PIXEL_SCALE, expected, atol=1 / PIXEL_SCALE)
    errors = _rows(report.root / "errors.csv")
    assert len(errors) == 4 and all("slices are missing between" in e["reason"] for e in errors)
    again = prepare_cache(root, tmp_path / "cache", size=SIZE, workers=0, progress=False,
                          ct=CTSlices(CTDisplay.parse("lung")))
    # Nothing is read again; the unorderable series is judged again from its headers.
    assert (again.images, again.read, again.errors) == (14, 0, 4)
    with pytest.raises(DataError, match="prepared with"):
        prepare_cache(root, tmp_path / "cache", size=SIZE, workers=0, progress=False,
                      ct=CTSlices(CTDisplay.parse("min_max")))


def test_sampling_lists_what_it_leaves_out(tmp_path, archive, capsys):
    root, volumes, paths = archive
    assert main(["prepare", str(root / "patient0"), str(tmp_path / "every"), "--size", str(SIZE), "--workers", "0",
                 "--ct", "min_max", "--slice-step", "3"]) == 0
    assert "5 CT slices left out by the sampling" in capsys.readouterr().out
    cache = PreparedCache(tmp_path / "every")
    assert [int(r["slice_index"]) for r in cache.records] == [0, 3, 6]
    skipped = _rows(tmp_path / "every" / "skipped.csv")
    assert sorted(r["name"] for r in skipped) == sorted(p.name for i, p in enumerate(paths[0]) if i % 3)
    first = cache.pixels(0) / PIXEL_SCALE  # Wolf et al.'s per-slice min-max: the full range is used
    assert first.min() == 0 and first.max() == 1
    # The body share: the synthetic slices' soft tissue and bone cover about a third of the image.
    body = prepare_cache(root / "patient1", tmp_path / "body", size=SIZE, workers=0, progress=False,
                         ct=CTSlices(CTDisplay.parse("mediastinum"), min_body_share=0.99))
    assert (body.images, body.skipped) == (0, 6)
    assert all("under min_body_share 0.99" in r["reason"] for r in _rows(tmp_path / "body" / "skipped.csv"))


def test_policies_the_single_channel_cache_cannot_hold_are_refused():
    for text in ("hu", "lung+bone"):
        with pytest.raises(ConfigError, match="one channel of display values"):
            CTSlices(CTDisplay.parse(text))
    with pytest.raises(ConfigError, match="slice_step must be at least 1"):
        CTSlices(CTDisplay.parse("lung"), slice_step=0)


@pytest.mark.parametrize("rescale", [(1.0, -1024.0), (0.5, -1024.0), (-1.0, 1024.0)])
@pytest.mark.parametrize("display", ["min_max", "bone"])
def test_a_slice_equals_pydicoms_hu_through_the_policy(tmp_path, rescale, display):
    """load_slice maps stored values through one table; pydicom's HU with the formula in numpy."""
    from cxrfast.data.ct_slices import BODY_HU, load_slice

    volume = synthetic_ct(2, SIZE, seed=5)
    path = write_ct_series(tmp_path, volume, rescale=rescale)[1]
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    padding = stored == ds.PixelPaddingValue
    hu = np.where(padding, -1024.0, apply_modality_lut(stored, ds))
    if display == "min_max":
        expected = (hu - hu.min()) / (hu.max() - hu.min())
    else:
        level, width = WINDOWS[display]
        expected = np.clip((hu - (level - width / 2)) / width, 0, 1)
    shown, body, metadata = load_slice(path, CTSlices(CTDisplay.parse(display), min_body_share=0.1))
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert body == pytest.approx(((apply_modality_lut(stored, ds) > BODY_HU) & ~padding).mean())
    assert metadata["sop_instance_uid"] == ds.SOPInstanceUID


@pytest.mark.parametrize("transfer_syntax", ["explicit", "implicit", "rle"])
def test_an_enhanced_cts_frames_are_slices_placed_by_its_functional_groups(tmp_path, transfer_syntax):
    from cxrfast.data.synthetic_ct import write_enhanced_ct
    from cxrfast.io import read_header

    volume = synthetic_ct(7, SIZE, seed=2, spacing=3.0)
    (tmp_path / "src").mkdir()
    order = write_enhanced_ct(tmp_path / "src" / "enhanced.dcm", volume, shuffle=True, seed=4,
                              transfer_syntax=transfer_syntax)
    ds = pydicom.dcmread(tmp_path / "src" / "enhanced.dcm")
    frames = read_header(tmp_path / "src" / "enhanced.dcm").frame_geometry
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence):
        assert frame.position == pytest.approx([float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient])
    assert frames[0].orientation == pytest.approx([float(v) for v in ds.SharedFunctionalGroupsSequence[0]
                                                   .PlaneOrientationSequence[0].ImageOrientationPatient])
    report = prepare_cache(tmp_path / "src", tmp_path / "cache", size=SIZE, workers=0, progress=False,
                           ct=CTSlices(CTDisplay.parse("lung")))
    cache = PreparedCache(report.root)
    frame_of = np.argsort(order)  # slice j is frame frame_of[j]
    assert [r["name"] for r in cache.records] == [f"enhanced.dcm#{frame_of[j]}" for j in range(7)]
    np.testing.assert_allclose([float(r["slice_position"]) for r in cache.records], volume.z, atol=1e-3)
    level, width = WINDOWS["lung"]
    for j in (0, 3, 6):
        hu = np.where(volume.hu[j] == -2000, -1024.0, volume.hu[j])
        np.testing.assert_allclose(cache.pixels(j) / PIXEL_SCALE, np.clip((hu - (level - width / 2)) / width, 0, 1),
                                   atol=1 / PIXEL_SCALE)
