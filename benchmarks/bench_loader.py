"""cxrfast.bench.loader under pytest-benchmark: two-view SSL batches from DICOM against pydicom +
torchvision in a DataLoader (see that module). Run: make bench."""

from conftest import suite_test

test_loader = suite_test("loader")
