"""Generated radiographs in every transfer syntax this environment can encode: cxrfast's three
stages against the values written and against pydicom."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pydicom
import pytest
from helpers import pydicom_reference
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from cxrfast.data.synthetic import make_phantom, to_stored
from cxrfast.io import read_dicom, read_header
from cxrfast.io.dicom_writer import LOSSY_TRANSFER_SYNTAXES, TRANSFER_SYNTAXES, encodable_transfer_syntaxes, write_dicom

ENCODABLE = encodable_transfer_syntaxes()
LOSSLESS = [n for n, uid in ENCODABLE.items() if uid not in LOSSY_TRANSFER_SYNTAXES]
LOSSY = [n for n, uid in ENCODABLE.items() if uid in LOSSY_TRANSFER_SYNTAXES]
PYDICOM_DECODES = [n for n in ENCODABLE if n != "encapsulated_uncompressed"]  # pydicom has no decoder for it


def test_every_lossless_syntax_but_htj2k_is_encodable_here():
    # HTJ2K has no encoder in pydicom 3.0 or pylibjpeg-openjpeg 2.6: reading it is covered by
    # the decoder plugin, writing fixtures is not possible here.
    assert set(TRANSFER_SYNTAXES) - set(ENCODABLE) <= {"htj2k"}
    assert {"implicit", "explicit", "big_endian", "deflated", "rle", "jpeg_ls", "jpeg2000"} <= set(LOSSLESS)


def _phantom_stored(seed, rows, columns, bits, pi, signed=False, frames=1):
    stacks = [to_stored(make_phantom(seed + k, rows, columns).image, bits, pi, int(signed)) for k in range(frames)]
    return stacks[0] if frames == 1 else np.stack(stacks)


def _write(tmp_path, name, stored, **kwargs):
    return write_dicom(tmp_path / f"{name}.dcm", stored, transfer_syntax=name, **kwargs)


def _pydicom(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        return ds, ds.pixel_array


CASES = {
    "mono2-12bit-window": dict(bits_stored=12, photometric_interpretation="MONOCHROME2", window=(2048.0, 3000.0)),
    "mono1-12bit-window-rescale": dict(bits_stored=12, photometric_interpretation="MONOCHROME1",
                                       window=(900.0, 2500.0), rescale=(0.5, -100.0)),
    "mono2-16bit-no-voi": dict(bits_stored=16, photometric_interpretation="MONOCHROME2"),
    "mono1-16bit-sigmoid": dict(bits_stored=16, photometric_interpretation="MONOCHROME1",
                                window=(30000.0, 20000.0), voi_lut_function="SIGMOID"),
    "mono2-12bit-signed-linear-exact": dict(bits_stored=12, photometric_interpretation="MONOCHROME2",
                                            pixel_representation=1, window=(0.0, 3000.0),
                                            voi_lut_function="LINEAR_EXACT", rescale=(2.0, 1024.0)),
    "mono2-8bit-inverse-shape": dict(bits_stored=8, photometric_interpretation="MONOCHROME2",
                                     window=(128.0, 200.0), presentation_lut_shape="INVERSE"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("syntax", list(ENCODABLE))
def test_stages_match_written_values_and_pydicom(tmp_path, syntax, case):
    options = CASES[case]
    signed = options.get("pixel_representation", 0) == 1
    stored = _phantom_stored(7, 67, 65, options["bits_stored"], options["photometric_interpretation"], signed)
    if syntax == "jpeg_ls_near" and signed:  # NEAR=2 cannot code values within 2 of the signed limits
        stored = np.clip(stored, -2046, 2045)
    path = _write(tmp_path, syntax, stored, **options)
    got = read_dicom(path, stage="stored").pixels
    if syntax in LOSSLESS:
        np.testing.assert_array_equal(got, stored)
    if syntax in PYDICOM_DECODES:
        ds, reference = _pydicom(path)
        np.testing.assert_array_equal(got, reference)
    else:
        ds, reference = _pydicom(_write(tmp_path, "explicit", stored, **options))
    np.testing.assert_allclose(read_dicom(path, stage="modality").pixels,
                               apply_modality_lut(reference, ds), rtol=1e-6, atol=1e-3)
    display = read_dicom(path, stage="display").pixels
    assert display.dtype == np.float32 and 0.0 <= display.min() and display.max() <= 1.0
    np.testing.assert_allclose(display, pydicom_reference.display(ds, reference), atol=2e-6)


@pytest.mark.parametrize("syntax", LOSSY)
def test_lossy_syntaxes_stay_near_the_written_values(tmp_path, syntax):
    stored = _phantom_stored(3, 64, 64, 12, "MONOCHROME2")
    got = read_dicom(_write(tmp_path, syntax, stored, bits_stored=12), stage="stored").pixels.astype(np.int64)
    error = np.abs(got - stored)
    assert error.mean() < 0.02 * 4096 and error.max() < 0.25 * 4096  # 10:1 JPEG 2000 or NEAR=2 JPEG-LS


@pytest.mark.parametrize("layout", [
    dict(offset_table="empty", fragments_per_frame=1),
    dict(offset_table="empty", fragments_per_frame=3),
    dict(offset_table="basic", fragments_per_frame=2),
    dict(offset_table="extended", fragments_per_frame=1),
])
@pytest.mark.parametrize("syntax", [n for n in ("jpeg_ls", "jpeg2000", "rle", "encapsulated_uncompressed") if n in ENCODABLE])
def test_multiframe_encapsulation_layouts(tmp_path, syntax, layout):
    if syntax in ("rle", "encapsulated_uncompressed") and layout["fragments_per_frame"] > 1:
        layout = dict(layout, fragments_per_frame=1)  # PS3.5: one fragment per frame for these
    stored = _phantom_stored(11, 64, 71, 12, "MONOCHROME1", frames=3)
    path = _write(tmp_path, syntax, stored, bits_stored=12, photometric_interpretation="MONOCHROME1", **layout)
    np.testing.assert_array_equal(read_dicom(path, stage="stored").pixels, stored)
    for k in range(3):
        np.testing.assert_array_equal(read_dicom(path, stage="stored", frame=k).pixels, stored[k])
    assert read_header(path).frames == 3


@pytest.mark.parametrize("syntax", [n for n in ("explicit", "big_endian", "deflated", "implicit") if n in ENCODABLE])
def test_native_multiframe_single_frame_reads(tmp_path, syntax):
    stored = _phantom_stored(5, 64, 66, 16, "MONOCHROME2", frames=4)
    path = _write(tmp_path, syntax, stored, bits_stored=16, window=(30000.0, 40000.0))
    for k in (0, 3):
        np.testing.assert_array_equal(read_dicom(path, stage="stored", frame=k).pixels, stored[k])
        np.testing.assert_array_equal(read_dicom(path.read_bytes(), stage="display", frame=k).pixels,
                                      read_dicom(path, stage="display").pixels[k])


@pytest.mark.parametrize("syntax", ["explicit", "rle"])
def test_full_size_radiograph(tmp_path, syntax):
    stored = _phantom_stored(21, 2500, 2048, 12, "MONOCHROME1")
    path = _write(tmp_path, syntax, stored, bits_stored=12, photometric_interpretation="MONOCHROME1",
                  window=(2048.0, 3500.0))
    np.testing.assert_array_equal(read_dicom(path, stage="stored").pixels, stored)
    ds, reference = _pydicom(path)
    np.testing.assert_allclose(read_dicom(path, stage="display").pixels, pydicom_reference.display(ds, reference),
                               atol=2e-6)


@pytest.mark.parametrize("pi", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("window", [None, (2048.0, 4096.0)])
def test_padding_displays_as_zero_and_is_left_out_of_min_max(tmp_path, pi, window):
    stored = _phantom_stored(2, 65, 64, 12, pi)
    stored[:, :6] = 4095 if pi == "MONOCHROME1" else 0  # the collimated border, padded
    stored[0, 10] = 4000 if pi == "MONOCHROME1" else 95  # inside the padding range limit
    padding = (4095, 4000) if pi == "MONOCHROME1" else (0, 95)
    path = _write(tmp_path, "explicit", stored, bits_stored=12, photometric_interpretation=pi, window=window,
                  padding=padding)
    ds, reference = _pydicom(path)
    pad = (stored >= min(padding)) & (stored <= max(padding))
    got = read_dicom(path, stage="display").pixels
    assert np.all(got[pad] == 0.0)
    np.testing.assert_allclose(got, pydicom_reference.display(ds, reference), atol=2e-6)
    # What pydicom gives when padding is treated as a pixel: it differs, which is the point.
    unpadded = copy.deepcopy(ds)
    del unpadded.PixelPaddingValue
    del unpadded.PixelPaddingRangeLimit
    assert not np.allclose(pydicom_reference.display(unpadded, reference), got, atol=1e-3)
    if window is None:  # min-max over the kept pixels reaches both ends
        assert got[~pad].min() == pytest.approx(0.0, abs=1e-6) and got[~pad].max() == pytest.approx(1.0, abs=1e-6)


def _lut_item(descriptor, data):
    item = Dataset()
    item.LUTDescriptor = descriptor
    item.LUTData = data
    return item


# The reference feeds pydicom's VOI LUT the modality stage's float output, and pydicom warns on
# any float input; its lookup of these whole-valued floats is what the test compares against.
@pytest.mark.filterwarnings("ignore:Applying a VOI LUT on a float input array:UserWarning")
@pytest.mark.parametrize("pi", ["MONOCHROME1", "MONOCHROME2"])
def test_modality_and_voi_lut_sequences(tmp_path, pi):
    stored = _phantom_stored(9, 64, 64, 12, pi)
    path = _write(tmp_path, "explicit", stored, bits_stored=12, photometric_interpretation=pi,
                  window=(100.0, 50.0))  # the VOI LUT Sequence takes precedence over the window
    ds = pydicom.dcmread(path)
    # A modality LUT from 100 over 3900 entries (values outside clamp), then a 10-bit VOI LUT.
    modality_lut = (np.sqrt(np.arange(3900)) * 1000).astype(np.uint16)
    ds.ModalityLUTSequence = [_lut_item([3900, 100, 16], modality_lut.tolist())]
    ds.ModalityLUTSequence[0].ModalityLUTType = "US"
    voi = np.clip(np.arange(0, 4096) // 4 + 50, 0, 1023).astype(np.uint16)
    ds.VOILUTSequence = [_lut_item([4096, 40000 & 0xFFFF, 10], voi.tolist())]
    for item, vr in ((ds.ModalityLUTSequence[0], "US"), (ds.VOILUTSequence[0], "US")):
        item["LUTDescriptor"].VR = vr
        item["LUTData"].VR = "US"
    ds.save_as(path, enforce_file_format=True)
    ds, reference = _pydicom(path)
    np.testing.assert_allclose(read_dicom(path, stage="modality").pixels, apply_modality_lut(reference, ds))
    np.testing.assert_allclose(read_dicom(path, stage="display").pixels, pydicom_reference.display(ds, reference),
                               atol=2e-6)
    info = read_header(path)
    assert info.modality_lut.first_mapped == 100 and info.modality_lut.data.size == 3900
    assert info.voi_lut.bits == 10 and info.voi_lut.first_mapped == 40000


def test_threads_read_concurrently_with_identical_results(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    paths = [_write(tmp_path / str(i), "explicit", _phantom_stored(i, 300, 200, 12, "MONOCHROME1"), bits_stored=12,
                    photometric_interpretation="MONOCHROME1", window=(2048.0, 4000.0))
             for i in range(8) if (tmp_path / str(i)).mkdir() is None]
    serial = [read_dicom(p).pixels for p in paths]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda p: read_dicom(p).pixels, paths * 4))
    for k, pixels in enumerate(parallel):
        np.testing.assert_array_equal(pixels, serial[k % len(paths)])
