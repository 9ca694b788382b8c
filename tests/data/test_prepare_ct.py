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
            np.testing.assert_allclose(cache.pixels(i)[0] / PIXEL_SCALE, expected, atol=1 / PIXEL_SCALE)
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
    first = cache.pixels(0)[0] / PIXEL_SCALE  # Wolf et al.'s per-slice min-max: the full range is used
    assert first.min() == 0 and first.max() == 1
    # The body share: the synthetic slices' soft tissue and bone cover about a third of the image.
    body = prepare_cache(root / "patient1", tmp_path / "body", size=SIZE, workers=0, progress=False,
                         ct=CTSlices(CTDisplay.parse("mediastinum"), min_body_share=0.99))
    assert (body.images, body.skipped) == (0, 6)
    assert all("under min_body_share 0.99" in r["reason"] for r in _rows(tmp_path / "body" / "skipped.csv"))


def _pydicom_hu(path):
    ds = pydicom.dcmread(path)
    return np.where(ds.pixel_array == ds.PixelPaddingValue, -1024.0, apply_modality_lut(ds.pixel_array, ds))


def _window(hu, name):
    level, width = WINDOWS[name]
    return np.clip((hu - (level - width / 2)) / width, 0, 1)


def test_a_cache_of_hounsfield_units_is_windowed_when_read(tmp_path, archive):
    root, volumes, paths = archive
    ct = CTSlices(CTDisplay.parse("hu"))
    report = prepare_cache(root / "patient0", tmp_path / "hu", size=SIZE, workers=0, progress=False, ct=ct)
    assert sorted(p.suffix for p in report.root.glob("shard-*")) == [".i16", ".json"]
    with pytest.raises(ConfigError, match="a cache of Hounsfield units; choose how"):
        PreparedCache(report.root)
    cache = PreparedCache(report.root, display="lung+bone")
    assert cache.channels == 2 and cache.settings["format"] == 2
    per_slice = PreparedCache(report.root, display=CTDisplay.parse("min_max"))
    for i in (0, 4, 7):
        hu = _pydicom_hu(root / "patient0" / cache.records[i]["name"])
        assert cache.pixels(i).dtype == np.int16
        np.testing.assert_array_equal(cache.pixels(i)[0], hu)  # integral HU under LIDC's rescale
        np.testing.assert_allclose(cache[i].numpy(), np.stack([_window(hu, "lung"), _window(hu, "bone")]),
                                   atol=1e-6)
        np.testing.assert_allclose(per_slice[i][0].numpy(), (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)
    # Prepared in two parts and merged, the int16 shards move like the uint16 ones.
    for k in (1, 2):
        prepare_cache(root / "patient0", tmp_path / "merged", size=SIZE, workers=0, progress=False, ct=ct, part=(k, 2))
    from cxrfast.data.prepare import merge_parts

    merge_parts(root / "patient0", tmp_path / "merged", 2, size=SIZE, progress=False, ct=ct)
    merged = PreparedCache(tmp_path / "merged", display="lung+bone")
    assert [r["name"] for r in merged.records] == [r["name"] for r in cache.records]
    for i in range(len(cache)):
        np.testing.assert_array_equal(merged.pixels(i), cache.pixels(i))


def test_several_windows_are_channels_of_one_cache(tmp_path, archive):
    root, volumes, paths = archive
    names = ("lung", "mediastinum", "bone")
    report = prepare_cache(root / "patient1", tmp_path / "windows", size=SIZE // 2, workers=0, progress=False,
                           ct=CTSlices(CTDisplay.parse("+".join(names))))
    cache = PreparedCache(report.root)
    assert cache.channels == 3 and cache.settings["format"] == 2
    for i in range(len(cache)):
        hu = _pydicom_hu(root / "patient1" / cache.records[i]["name"])
        # Each window is shrunk on its own: the area mean of its values, 2 × 2 to 1 here.
        expected = np.stack([_window(hu, n).reshape(SIZE // 2, 2, SIZE // 2, 2).mean((1, 3)) for n in names])
        assert cache[i].shape == (3, SIZE // 2, SIZE // 2)
        np.testing.assert_allclose(cache[i].numpy(), expected, atol=2 / PIXEL_SCALE)
    for display in ("lung", "hu"):  # display values are shown already: only their own policy is accepted
        with pytest.raises(ConfigError, match="applies to a cache of Hounsfield units"):
            PreparedCache(report.root, display=display)
    assert PreparedCache(report.root, display="lung+mediastinum+bone").channels == 3


def test_a_cache_from_a_newer_format_is_refused(tmp_path):
    (tmp_path / "cache.json").write_text('{"format": 99, "size": 8}')
    (tmp_path / "manifest.csv").write_text("name,shard,offset,rows,columns\n")
    with pytest.raises(DataError, match="format 99 is newer"):
        PreparedCache(tmp_path)


def test_slice_sampling_is_checked():
    with pytest.raises(ConfigError, match="slice_step must be at least 1"):
        CTSlices(CTDisplay.parse("lung"), slice_step=0)


@pytest.mark.parametrize("rescale", [(1.0, -1024.0), (0.5, -1024.0), (-1.0, 1024.0)])
@pytest.mark.parametrize("display", ["min_max", "bone", "hu"])
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
    elif display == "hu":  # float32 HU; the cache rounds them to int16
        expected = hu
    else:
        level, width = WINDOWS[display]
        expected = np.clip((hu - (level - width / 2)) / width, 0, 1)
    shown, body, metadata = load_slice(path, CTSlices(CTDisplay.parse(display), min_body_share=0.1))
    np.testing.assert_allclose(shown[0], expected, atol=1e-6, rtol=1e-6)
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
        np.testing.assert_allclose(cache.pixels(j)[0] / PIXEL_SCALE, np.clip((hu - (level - width / 2)) / width, 0, 1),
                                   atol=1 / PIXEL_SCALE)
