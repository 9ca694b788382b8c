"""Each named UID is the one pydicom's UID dictionary (PS3.6 Annex A) gives that keyword."""

from __future__ import annotations

import pytest
from pydicom.uid import UID

from cxrfast.io import dicom_uids

NAMED = {name: value for name, value in vars(dicom_uids).items() if not name.startswith("_")}


def test_no_uid_has_two_names():
    assert len(set(NAMED.values())) == len(NAMED)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_as_pydicom_names_it(name):
    assert type(NAMED[name]) is str  # the native reader compares plain strings
    assert UID(NAMED[name]).keyword == name


def test_a_few_by_their_standard_value():
    assert dicom_uids.ImplicitVRLittleEndian == "1.2.840.10008.1.2"
    assert dicom_uids.EncapsulatedUncompressedExplicitVRLittleEndian == "1.2.840.10008.1.2.1.98"
    assert dicom_uids.ComputedRadiographyImageStorage == "1.2.840.10008.5.1.4.1.1.1"
    assert dicom_uids.DigitalXRayImageStorageForPresentation == "1.2.840.10008.5.1.4.1.1.1.1"
