"""cxrfast.bench.dicom under pytest-benchmark: DICOM reading against pydicom, and the preparation
of a CT archive against pydicom's loop (see that module). Run: make bench."""

from conftest import suite_test

test_dicom = suite_test("dicom")
