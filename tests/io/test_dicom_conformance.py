"""Conformance with pydicom on its bundled test files: every file pydicom decodes, cxrfast reads
to the same stored values, and to pydicom's modality and VOI outputs (normalised to [0, 1])."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import pydicom_reference
from pydicom.pixels import apply_modality_lut

from cxrfast.io import DicomError, read_dicom, read_header
from cxrfast.io.dicom import SUPPORTED_PHOTOMETRIC

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _decodable() -> list[tuple[str, str]]:
    """(file name, photometric interpretation) of every bundled file pydicom can decode here."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(TEST_FILES.glob("*.dcm")):
            try:
                ds = pydicom.dcmread(path)
                ds.pixel_array
            except Exception:
                continue
            found.append((path.name, str(ds.PhotometricInterpretation)))
    return found


DECODABLE = _decodable()
SUPPORTED = [name for name, pi in DECODABLE if pi in SUPPORTED_PHOTOMETRIC]
MONOCHROME = [name for name, pi in DECODABLE if pi.startswith("MONOCHROME")]
UNSUPPORTED = [name for name, pi in DECODABLE if pi not in SUPPORTED_PHOTOMETRIC]


# pydicom's SC_rgb_jpeg.dcm declares explicit VR and holds implicit; pydicom reads it either way.
pytestmark = pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR:UserWarning")


def _reference(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(TEST_FILES / name)
        return ds, ds.pixel_array


def test_the_corpus_is_broad():
    # Guards against a pydicom release that ships fewer files making these tests vacuous.
    assert len(SUPPORTED) >= 25 and len(MONOCHROME) >= 15
    syntaxes = {str(pydicom.dcmread(TEST_FILES / n, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for n in SUPPORTED}
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"} <= syntaxes


@pytest.mark.parametrize("name", SUPPORTED)
def test_stored_equals_pixel_array(name):
    ds, expected = _reference(name)
    got = read_dicom(TEST_FILES / name, stage="stored").pixels
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype.newbyteorder("=")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", SUPPORTED)
def test_bytes_source_and_single_frames(name):
    _, expected = _reference(name)
    data = (TEST_FILES / name).read_bytes()
    np.testing.assert_array_equal(read_dicom(data, stage="stored").pixels, expected)
    frames = read_header(data).frames
    if frames > 1:
        for k in (0, frames - 1):
            np.testing.assert_array_equal(read_dicom(TEST_FILES / name, frame=k, stage="stored").pixels, expected[k])


@pytest.mark.parametrize("name", MONOCHROME)
def test_modality_equals_apply_modality_lut(name):
    ds, stored = _reference(name)
    expected = apply_modality_lut(stored, ds).astype(np.float64)
    got = read_dicom(TEST_FILES / name, stage="modality").pixels
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("name", MONOCHROME)
def test_display_equals_apply_voi_lut(name):
    ds, stored = _reference(name)
    expected = pydicom_reference.display(ds, stored)
    got = read_dicom(TEST_FILES / name, stage="display").pixels
    assert got.dtype == np.float32 and got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_other_photometric_interpretations_are_refused(name):
    with pytest.raises(DicomError, match="Photometric Interpretation"):
        read_dicom(TEST_FILES / name, stage="stored")


@pytest.mark.parametrize("name", [n for n, pi in DECODABLE if pi == "RGB"])
def test_rgb_has_no_display_stage(name):
    with pytest.raises(DicomError, match="needs MONOCHROME1 or MONOCHROME2"):
        read_dicom(TEST_FILES / name, stage="display")


@pytest.mark.parametrize("name", SUPPORTED)
def test_header_matches_pydicom(name):
    ds = pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True)
    info = read_header(TEST_FILES / name)
    assert (info.rows, info.columns) == (ds.Rows, ds.Columns)
    assert info.frames == int(ds.get("NumberOfFrames", 1) or 1)
    assert info.bits_allocated == ds.BitsAllocated and info.bits_stored == ds.BitsStored
    assert info.pixel_representation == ds.PixelRepresentation
    assert info.photometric_interpretation == ds.PhotometricInterpretation
    assert info.transfer_syntax == ds.file_meta.TransferSyntaxUID
    assert info.modality == ds.get("Modality") or None
    assert info.patient_id == (ds.get("PatientID") or None)
    assert info.study_instance_uid == (ds.get("StudyInstanceUID") or None)
    if "RescaleSlope" in ds:
        assert info.rescale.slope == pytest.approx(float(ds.RescaleSlope))
        assert info.rescale.intercept == pytest.approx(float(ds.RescaleIntercept))
    if "WindowCenter" in ds:
        center = ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter
        assert info.window.center == pytest.approx(float(center))
    else:
        assert info.window is None

    geometry = info.geometry  # where the file places the slice (an explicit UN of a DS included)
    for keyword, ours in (("ImagePositionPatient", geometry and geometry.position),
                          ("ImageOrientationPatient", geometry and geometry.orientation),
                          ("PixelSpacing", geometry and geometry.pixel_spacing)):
        if keyword in ds and ds[keyword].value not in (None, ""):
            assert ours == pytest.approx(tuple(float(v) for v in ds[keyword].value)), keyword
        else:
            assert ours is None, keyword
    if "InstanceNumber" in ds and ds.InstanceNumber not in (None, ""):
        assert geometry.instance_number == int(ds.InstanceNumber)
