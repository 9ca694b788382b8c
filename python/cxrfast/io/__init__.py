"""DICOM and image reading (and the writers the tests and demos use)."""

from cxrfast.errors import DicomError
from cxrfast.io.dicom import STAGES, DicomImage, read_dicom
from cxrfast.io.dicom_header import DicomInfo, LookupTable, Padding, Rescale, Window, read_header

__all__ = ["STAGES", "DicomError", "DicomImage", "DicomInfo", "LookupTable", "Padding", "Rescale", "Window",
           "read_dicom", "read_header"]
