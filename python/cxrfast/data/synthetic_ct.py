"""Seeded synthetic chest CT: volumes in Hounsfield units with labelled nodules, written as CT
series, so tests, benchmarks and a CT demo need no downloads.

A volume is drawn on analytic shapes in patient millimetres (x to the patient's left, y to the
back, z to the head, as DICOM's patient coordinates): an elliptical body of muscle (+40 HU) under
a fat layer (−100), two lungs near −850 that widen from apex to base, vessels (+40) as thin
tubes through them, the trachea (−1000) splitting into the main bronchi, a vertebral body and
ribs (cortical +1000 around +300 marrow), and nodules (spheres of +30 to +80) whose centres and
radii are the labels. Outside the body is air (−1000) and outside the scanner's circular field
of view the padding value, as scanners pad. Each slice is written with Rescale Slope/Intercept
over signed stored values, Pixel Padding Value, Image Position/Orientation (Patient) and
spacing, as one file per slice (shuffled names if asked, as archives hold them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pydicom.valuerep import DSfloat

from cxrfast.io.dicom_writer import write_dicom

AIR, FAT, MUSCLE, LUNG, VESSEL, MARROW, CORTEX = -1000, -100, 40, -850, 40, 300, 1000
PADDING_HU = -2000
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


@dataclass(frozen=True)
class Nodule:
    centre: tuple[float, float, float]  # mm, patient coordinates
    radius: float  # mm
    hu: float


@dataclass(frozen=True)
class CTVolume:
    hu: np.ndarray  # (slices, rows, columns) int16, padding included, slices from the lowest z
    z: np.ndarray  # each slice's position along the normal, mm
    pixel_spacing: float  # mm, rows and columns
    nodules: tuple[Nodule, ...]

    def nodule_slices(self) -> np.ndarray:
        """Whether each slice cuts a nodule: the slice labels a CT classifier learns."""
        return np.array([any(abs(z - n.centre[2]) < n.radius for n in self.nodules) for z in self.z])


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1


def synthetic_ct(slices: int = 32, size: int = 64, *, seed: int = 0, spacing: float = 2.5,
                 field_of_view: float = 360.0, nodules: int = 2) -> CTVolume:
    """A chest CT volume of `slices` axial slices `spacing` mm apart, `size`² pixels over a
    `field_of_view` mm square, with `nodules` nodules."""
    if slices < 1 or size < 16 or spacing <= 0 or field_of_view <= 0 or nodules < 0:
        raise ValueError("slices ≥ 1, size ≥ 16, positive spacing and field of view, nodules ≥ 0")
    rng = np.random.default_rng(seed)
    pixel = field_of_view / size
    centres = (np.arange(size) - (size - 1) / 2) * pixel
    y, x = np.meshgrid(centres, centres, indexing="ij")
    z = (np.arange(slices) - (slices - 1) / 2) * spacing
    height = max(z[-1] - z[0], spacing)
    body_a, body_b = rng.uniform(150, 170), rng.uniform(100, 120)
    lung_a, lung_b = 0.35 * body_a, 0.7 * body_b
    vessels = rng.uniform(-1, 1, (24, 2)) * [lung_a * 0.8, lung_b * 0.7]
    vessel_side = rng.choice([-1, 1], 24)
    found = []
    for _ in range(nodules):
        side = rng.choice([-1, 1])
        centre = (side * (0.4 * body_a + rng.uniform(-0.25, 0.25) * lung_a), rng.uniform(-0.4, 0.4) * lung_b,
                  float(rng.uniform(z[0], z[-1])))
        found.append(Nodule(tuple(float(c) for c in centre), float(rng.uniform(4, 10)), float(rng.uniform(30, 80))))
    volume = np.empty((slices, size, size), np.int16)
    for k, zk in enumerate(z):
        t = (zk - z[0]) / height  # 0 at the bases (feet), 1 at the apices
        hu = np.full((size, size), AIR, np.float32)
        hu[_ellipse(x, y, 0, 0, body_a, body_b)] = FAT
        hu[_ellipse(x, y, 0, 0, body_a - 12, body_b - 12)] = MUSCLE
        scale = 1.0 - 0.45 * t  # lungs narrow towards the apices
        for side in (-1, 1):
            lung = _ellipse(x, y, side * 0.4 * body_a, -0.05 * body_b, lung_a * scale, lung_b * scale)
            hu[lung] = LUNG
            for (vx, vy), vs in zip(vessels, vessel_side):
                if vs == side:
                    tube = _ellipse(x, y, side * 0.4 * body_a + vx * scale, vy * scale, 2.5, 2.5)
                    hu[tube & lung] = VESSEL
        # The trachea above the carina (t > 0.6), the main bronchi below it.
        if t > 0.6:
            hu[_ellipse(x, y, 0, -0.45 * body_b, 9, 9)] = AIR
        elif t > 0.35:
            for side in (-1, 1):
                hu[_ellipse(x, y, side * 0.15 * body_a, -0.35 * body_b, 6, 6)] = AIR
        spine = _ellipse(x, y, 0, 0.72 * body_b, 16, 14)
        hu[spine] = CORTEX
        hu[_ellipse(x, y, 0, 0.72 * body_b, 12, 10)] = MARROW
        ring = _ellipse(x, y, 0, 0, body_a - 14, body_b - 14) & ~_ellipse(x, y, 0, 0, body_a - 20, body_b - 20)
        rib_angle = np.arctan2(y, x) + 0.3 * zk / 25
        hu[ring & (np.cos(6 * rib_angle) > 0.7)] = CORTEX
        for n in found:
            reach = n.radius ** 2 - (zk - n.centre[2]) ** 2
            if reach > 0:
                hu[_ellipse(x, y, n.centre[0], n.centre[1], np.sqrt(reach), np.sqrt(reach))] = n.hu
        hu += rng.normal(0, 10, hu.shape).astype(np.float32)  # quantum noise
        hu[x ** 2 + y ** 2 > (field_of_view / 2) ** 2] = PADDING_HU
        volume[k] = np.rint(hu).astype(np.int16)
    return CTVolume(volume, z, pixel, tuple(found))


def _stored(volume: CTVolume, rescale: tuple[float, float]) -> tuple[np.ndarray, int]:
    """Stored values (HU − intercept) / slope as int16, and the padding's."""
    slope, intercept = rescale
    stored = np.rint((volume.hu.astype(np.float64) - intercept) / slope)
    padding = int(np.rint((PADDING_HU - intercept) / slope))
    if stored.min() < -32768 or stored.max() > 32767 or not -32768 <= padding <= 32767:
        raise ValueError(f"rescale {rescale} does not fit the HU range in signed 16-bit stored values")
    return stored.astype(np.int16), padding


def _positions(volume: CTVolume, orientation: tuple[float, ...]) -> np.ndarray:
    """Each slice's Image Position (Patient): its first pixel, the slices stacked along the normal."""
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    first_pixel = -(volume.hu.shape[1] - 1) / 2 * volume.pixel_spacing * (row + column)
    return first_pixel + volume.z[:, None] * np.cross(row, column)


def _thickness(volume: CTVolume) -> float:
    return float(volume.z[1] - volume.z[0]) if len(volume.z) > 1 else 1.0


def write_ct_series(folder: str | os.PathLike, volume: CTVolume, *, orientation: tuple[float, ...] = AXIAL,
                    rescale: tuple[float, float] = (1.0, -1024.0), transfer_syntax: str = "explicit",
                    shuffle: bool = False, seed: int = 0, patient_id: str = "CXRFAST-CT-0001") -> list[Path]:
    """One CT file per slice of `volume` in `folder`; returns the paths in slice order. Stored
    values are (HU − intercept) / slope, signed 16-bit, the padding value at PADDING_HU's. The
    slices stack along the normal of `orientation` (row × column cosines), which need not be
    axial. With `shuffle`, file names and Instance Numbers follow no order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored, padding = _stored(volume, rescale)
    positions = _positions(volume, orientation)
    order = np.random.default_rng(seed).permutation(len(volume.z)) if shuffle else np.arange(len(volume.z))
    series = f"{patient_id}.series"
    paths = []
    for k in range(len(volume.z)):
        name = folder / f"slice-{int(order[k]):04d}.dcm"
        write_dicom(name, stored[k], modality="CT", transfer_syntax=transfer_syntax, bits_stored=16,
                    pixel_representation=1, rescale=rescale, padding=(padding, None), window=(-600, 1500),
                    patient_id=patient_id, seed=seed, series_instance_uid=generate_uid(entropy_srcs=[series]),
                    sop_instance_uid=generate_uid(entropy_srcs=[series, str(k)]), pixel_spacing=(volume.pixel_spacing,) * 2,
                    image_position=tuple(float(v) for v in positions[k]),
                    image_orientation=tuple(float(v) for v in orientation), instance_number=int(order[k]) + 1,
                    slice_thickness=_thickness(volume))
        paths.append(name)
    return paths


def _item(**values) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _ds(values) -> list[DSfloat]:
    return [DSfloat(float(v), auto_format=True) for v in values]


def write_enhanced_ct(path: str | os.PathLike, volume: CTVolume, *, orientation: tuple[float, ...] = AXIAL,
                      rescale: tuple[float, float] = (1.0, -1024.0), transfer_syntax: str = "explicit",
                      shuffle: bool = False, seed: int = 0, patient_id: str = "CXRFAST-CT-0001") -> np.ndarray:
    """`volume` as one Enhanced CT Image file: the slices as frames, their planes and the rescale
    in the functional groups (orientation, spacing and rescale shared; each frame's position its
    own). With `shuffle`, the frames follow no order; returns each frame's slice index."""
    stored, padding = _stored(volume, rescale)
    positions = _positions(volume, orientation)
    order = np.random.default_rng(seed).permutation(len(volume.z)) if shuffle else np.arange(len(volume.z))
    write_dicom(path, stored[order], modality="CT", transfer_syntax=transfer_syntax, bits_stored=16,
                pixel_representation=1, padding=(padding, None), patient_id=patient_id, seed=seed)
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.SharedFunctionalGroupsSequence = [_item(
        PixelMeasuresSequence=[_item(PixelSpacing=_ds([volume.pixel_spacing] * 2),
                                     SliceThickness=DSfloat(_thickness(volume), auto_format=True))],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=_ds(orientation))],
        PixelValueTransformationSequence=[_item(RescaleIntercept=DSfloat(rescale[1], auto_format=True),
                                                RescaleSlope=DSfloat(rescale[0], auto_format=True),
                                                RescaleType="HU")])]
    ds.PerFrameFunctionalGroupsSequence = [_item(
        FrameContentSequence=[_item(InStackPositionNumber=int(k) + 1)],
        PlanePositionSequence=[_item(ImagePositionPatient=_ds(positions[k]))]) for k in order]
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return order

