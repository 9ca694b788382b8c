"""The DICOM UIDs cxrfast reads or writes, named as pydicom names them (PS3.6 Annex A).

Plain strings, so the native reader needs no pydicom; the writer wraps them in `pydicom.uid.UID`
where it wants pydicom's knowledge of a syntax (encapsulated or not, its name).
"""

# Transfer syntaxes stored natively (PS3.5 A.1–A.3, A.5).
ImplicitVRLittleEndian = "1.2.840.10008.1.2"
ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
ExplicitVRBigEndian = "1.2.840.10008.1.2.2"
DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
# Encapsulated transfer syntaxes (PS3.5 A.4).
EncapsulatedUncompressedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.98"
RLELossless = "1.2.840.10008.1.2.5"
JPEGBaseline8Bit = "1.2.840.10008.1.2.4.50"
JPEGExtended12Bit = "1.2.840.10008.1.2.4.51"
JPEGLossless = "1.2.840.10008.1.2.4.57"
JPEGLosslessSV1 = "1.2.840.10008.1.2.4.70"
JPEGLSLossless = "1.2.840.10008.1.2.4.80"
JPEGLSNearLossless = "1.2.840.10008.1.2.4.81"
JPEG2000Lossless = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"
HTJ2KLossless = "1.2.840.10008.1.2.4.201"
HTJ2KLosslessRPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"

# SOP classes of the images the writer produces.
ComputedRadiographyImageStorage = "1.2.840.10008.5.1.4.1.1.1"
CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"
DigitalXRayImageStorageForPresentation = "1.2.840.10008.5.1.4.1.1.1.1"
