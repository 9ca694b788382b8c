"""CT series on synthetic chest CT (cxrfast.data.synthetic_ct): headers' geometry against
pydicom's, slices ordered along the normal whatever the files' names, Instance Numbers or
orientation, the geometry that cannot be ordered refused with the series and slices named, HU
against pydicom's apply_modality_lut, and each display policy against its formula."""

from __future__ import annotations

import math
import random

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from cxrfast.data.ct_display import PADDING_FILL_HU, WINDOWS, CTDisplay
from cxrfast.data.synthetic_ct import PADDING_HU, synthetic_ct, write_ct_series
from cxrfast.errors import ConfigError
from cxrfast.io.dicom import read_dicom
from cxrfast.io.dicom_header import SliceGeometry, read_header
from cxrfast.io.dicom_series import SeriesError, Slice, group_series, order_series


@pytest.fixture(scope="module")
def volume():
    return synthetic_ct(12, 32, seed=3, spacing=2.0, nodules=2)


def _slices(paths):
    infos = [(p.name, read_header(p)) for p in paths]
    random.Random(0).shuffle(infos)
    return infos[0][1].series_instance_uid, [Slice(name, info.geometry) for name, info in infos]


def _tilted(angle):
    """Row along x, column tilted by `angle` about x: an oblique stack."""
    c, s = math.cos(angle), math.sin(angle)
    return (1.0, 0.0, 0.0, 0.0, c, s)


@pytest.mark.parametrize("orientation", [(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), _tilted(0.5), (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)])
def test_shuffled_files_are_ordered_along_the_normal(tmp_path, volume, orientation):
    paths = write_ct_series(tmp_path, volume, orientation=orientation, shuffle=True)
    ds = pydicom.dcmread(paths[0])
    geometry = read_header(paths[0]).geometry
    assert geometry.position == pytest.approx(tuple(float(v) for v in ds.ImagePositionPatient))
    assert geometry.orientation == pytest.approx(tuple(float(v) for v in ds.ImageOrientationPatient))
    assert (geometry.instance_number, geometry.pixel_spacing) == (int(ds.InstanceNumber),
                                                                  tuple(float(v) for v in ds.PixelSpacing))
    uid, slices = _slices(paths)
    ordered = order_series(uid, slices)
    assert [s.name for s in ordered.slices] == [p.name for p in paths]  # the volume's order, not the names'
    assert ordered.ordered_by == "position" and ordered.spacing == pytest.approx(2.0)
    np.testing.assert_allclose(ordered.positions, volume.z, atol=1e-3)  # the origin on the normal


def _geometry(z, tilt=None, number=None, x=0.0, orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0)):
    return SliceGeometry((x, 0.0, z), orientation, number, (1.0, 1.0), 1.0, tilt)


@pytest.mark.parametrize("geometries,message", [
    ([_geometry(0), _geometry(1, tilt=15.0)], r"Gantry/Detector Tilt 15.0° \(s1\)"),
    ([_geometry(z, x=0.3 * z) for z in range(5)], "drift within the slice plane"),
    ([_geometry(0), _geometry(1), _geometry(1)], "s1 and s2 lie at the same position"),
    ([_geometry(0), _geometry(1), _geometry(2), _geometry(4), _geometry(5)], "missing between s2 and s3"),
    ([_geometry(0), SliceGeometry(None, None, 2, None, None, None)], "1 of 2 slices have no Image Position"),
    ([_geometry(0), _geometry(1, orientation=_tilted(0.2))], "differs between s0 and s1"),
    ([SliceGeometry(None, None, 3, None, None, None), SliceGeometry(None, None, 3, None, None, None)],
     "Instance Number 3 repeats"),
    ([SliceGeometry(None, None, None, None, None, None)], "neither Image Position"),
])
def test_geometry_that_cannot_be_ordered_is_refused(geometries, message):
    with pytest.raises(SeriesError, match=message) as error:
        order_series("1.2.3", [Slice(f"s{i}", g) for i, g in enumerate(geometries)])
    assert "series 1.2.3" in str(error.value)


def test_instance_numbers_order_a_series_without_positions_and_series_group():
    slices = [Slice(f"s{n}", SliceGeometry(None, None, n, None, None, None)) for n in (3, 1, 2)]
    ordered = order_series("9", slices)
    assert [s.name for s in ordered.slices] == ["s1", "s2", "s3"]
    assert (ordered.ordered_by, ordered.positions, ordered.spacing) == ("instance_number", None, None)
    groups = group_series([("a", slices[0]), ("b", slices[1]), ("a", slices[2])])
    assert {k: [s.name for s in v] for k, v in groups.items()} == {"a": ["s3", "s2"], "b": ["s1"]}
    with pytest.raises(SeriesError, match="s3: no Series Instance UID"):
        group_series([(None, slices[0])])


@pytest.mark.parametrize("rescale", [(1.0, -1024.0), (0.5, -1024.0), (2.0, -2048.0)])
@pytest.mark.parametrize("transfer_syntax", ["explicit", "rle", "jpeg_ls"])
def test_hounsfield_units_equal_pydicoms(tmp_path, volume, rescale, transfer_syntax):
    paths = write_ct_series(tmp_path, volume, rescale=rescale, transfer_syntax=transfer_syntax)
    for k in (0, 5):
        ds = pydicom.dcmread(paths[k])
        expected = apply_modality_lut(ds.pixel_array, ds)
        np.testing.assert_array_equal(read_dicom(paths[k], stage="modality").pixels, expected.astype(np.float32))
        if rescale[0] == 1:  # stored exactly: the volume's HU come back
            np.testing.assert_array_equal(expected, volume.hu[k])


def test_the_phantom_has_its_anatomy():
    volume = synthetic_ct(40, 32, seed=3, spacing=3.0)
    hu, inside = volume.hu, volume.hu != PADDING_HU
    assert (hu[~inside] == PADDING_HU).all() and inside.mean() > 0.7
    lungs = (hu > -950) & (hu < -700)
    assert 0.05 < lungs.mean() < 0.4  # lung parenchyma with noise
    assert (hu > 600).any() and (hu > -200).any()  # bone and soft tissue
    labels = volume.nodule_slices()
    assert labels.any() and not labels.all()
    for n in volume.nodules:  # each nodule's centre is as dense as its HU on its slice
        k = int(np.argmin(np.abs(volume.z - n.centre[2])))
        column, row = (int(round(c / volume.pixel_spacing + (hu.shape[1] - 1) / 2)) for c in n.centre[:2])
        assert abs(float(hu[k, row, column]) - n.hu) < 60


def test_display_policies_equal_their_formulas():
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1100, 1500, (16, 16))
    padding = np.zeros_like(hu, bool)
    padding[0, :4] = True
    filled = np.where(padding, PADDING_FILL_HU, hu)
    three = CTDisplay.parse("lung+mediastinum+bone")
    out = three.apply(hu, padding)
    assert out.shape == (3, 16, 16) and out.dtype == np.float32 and three.channels == 3
    for channel, name in zip(out, three.windows):
        level, width = WINDOWS[name]
        np.testing.assert_allclose(channel, np.clip((filled - (level - width / 2)) / width, 0, 1), atol=1e-6)
    wolf = CTDisplay.parse("min_max").apply(hu, padding)[0]
    np.testing.assert_allclose(wolf, (filled - filled.min()) / (filled.max() - filled.min()), atol=1e-6)
    raw = CTDisplay.parse("HU").apply(hu, padding)
    assert raw.dtype == np.int16
    np.testing.assert_array_equal(raw[0], np.rint(filled).astype(np.int16))
    assert str(three) == "lung+mediastinum+bone" and CTDisplay.parse(str(three)) == three
    with pytest.raises(ConfigError, match="unknown: lungs"):
        CTDisplay.parse("lungs+bone")
