"""The DICOM attributes cxrfast reads, by keyword, with their tags and value representations.

Implicit VR files carry no VRs, so the reader takes them from here (PS3.6).
"""

from __future__ import annotations

# keyword: (tag, VR)
ATTRIBUTES: dict[str, tuple[int, str]] = {
    "TransferSyntaxUID": (0x00020010, "UI"),
    "SOPClassUID": (0x00080016, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "Modality": (0x00080060, "CS"),
    "PatientID": (0x00100020, "LO"),
    "BodyPartExamined": (0x00180015, "CS"),
    "SliceThickness": (0x00180050, "DS"),
    "GantryDetectorTilt": (0x00181120, "DS"),
    "ViewPosition": (0x00185101, "CS"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "InstanceNumber": (0x00200013, "IS"),
    "ImagePositionPatient": (0x00200032, "DS"),
    "ImageOrientationPatient": (0x00200037, "DS"),
    "SamplesPerPixel": (0x00280002, "US"),
    "PhotometricInterpretation": (0x00280004, "CS"),
    "PlanarConfiguration": (0x00280006, "US"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "PixelSpacing": (0x00280030, "DS"),
    "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"),
    "HighBit": (0x00280102, "US"),
    "PixelRepresentation": (0x00280103, "US"),
    "PixelPaddingValue": (0x00280120, "xs"),
    "PixelPaddingRangeLimit": (0x00280121, "xs"),
    "WindowCenter": (0x00281050, "DS"),
    "WindowWidth": (0x00281051, "DS"),
    "RescaleIntercept": (0x00281052, "DS"),
    "RescaleSlope": (0x00281053, "DS"),
    "RescaleType": (0x00281054, "LO"),
    "VOILUTFunction": (0x00281056, "CS"),
    "ModalityLUTSequence": (0x00283000, "SQ"),
    "LUTDescriptor": (0x00283002, "xs"),
    "LUTExplanation": (0x00283003, "LO"),
    "ModalityLUTType": (0x00283004, "LO"),
    "LUTData": (0x00283006, "lt"),
    "VOILUTSequence": (0x00283010, "SQ"),
    "PresentationLUTShape": (0x20500020, "CS"),
    "FrameContentSequence": (0x00209111, "SQ"),
    "PlanePositionSequence": (0x00209113, "SQ"),
    "PlaneOrientationSequence": (0x00209116, "SQ"),
    "PixelMeasuresSequence": (0x00289110, "SQ"),
    "PixelValueTransformationSequence": (0x00289145, "SQ"),
    "SharedFunctionalGroupsSequence": (0x52009229, "SQ"),
    "PerFrameFunctionalGroupsSequence": (0x52009230, "SQ"),
    "ExtendedOffsetTable": (0x7FE00001, "OV"),
    "ExtendedOffsetTableLengths": (0x7FE00002, "OV"),
}

TAG = {keyword: tag for keyword, (tag, _) in ATTRIBUTES.items()}
VR = {tag: vr for tag, vr in ATTRIBUTES.values()}

# Sequences whose items the parser reports: the LUTs, and an enhanced multi-frame image's
# functional groups (the macros inside them are reported as elements of their group's item).
LUT_SEQUENCES = (TAG["ModalityLUTSequence"], TAG["VOILUTSequence"])
SHARED, PER_FRAME = TAG["SharedFunctionalGroupsSequence"], TAG["PerFrameFunctionalGroupsSequence"]
# The macros' own sequences, named so implicit VR files' defined-length ones are recognised.
MACRO_SEQUENCES = tuple(TAG[k] for k in ("FrameContentSequence", "PlanePositionSequence", "PlaneOrientationSequence",
                                         "PixelMeasuresSequence", "PixelValueTransformationSequence"))
REPORTED_SEQUENCES = (*LUT_SEQUENCES, SHARED, PER_FRAME, *MACRO_SEQUENCES)
