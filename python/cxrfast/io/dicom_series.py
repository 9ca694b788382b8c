"""CT series: the files (or frames) of one Series Instance UID put in order along the slice normal.

The order is that of each slice's Image Position (Patient) projected on the normal of its Image
Orientation (Patient), the row direction × the column direction (PS3.3 C.7.6.2.1.1); Instance
Number orders a series only when no slice has a position. What the geometry cannot settle is an
error naming the series and the slices, never a guess: positions on some slices and not others,
orientations that differ, two slices at one position, a gap where slices are missing, and a
gantry tilt (the positions drift within the slice plane, or Gantry/Detector Tilt says so), which
would need the slices resampled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cxrfast.errors import DataError
from cxrfast.io.dicom_header import SliceGeometry

# Slices closer than this share a position; a step this much longer than the usual one is a gap.
SAME_POSITION_MM = 1e-3
GAP = 1.5
# In-plane drift allowed per mm along the normal (rounding of positions), and orientations' tolerance.
DRIFT_PER_MM, ORIENTATION_TOLERANCE = 1e-3, 1e-4


class SeriesError(DataError):
    """A series whose slices cannot be put in order."""


@dataclass(frozen=True)
class Slice:
    """One slice of a series: its source (a file's name), the frame within it (None for a
    single-frame file) and its geometry."""

    name: str
    geometry: SliceGeometry | None
    frame: int | None = None


@dataclass(frozen=True)
class OrderedSeries:
    series_instance_uid: str
    slices: tuple[Slice, ...]  # from the most negative position along the normal
    positions: tuple[float, ...] | None  # mm along the normal; None when ordered by Instance Number
    spacing: float | None  # the usual distance between neighbours, mm (None for one slice or no positions)
    ordered_by: str  # "position" or "instance_number"


def _label(s: Slice) -> str:
    return s.name if s.frame is None else f"{s.name} frame {s.frame}"


def _fail(uid: str, problem: str) -> SeriesError:
    return SeriesError(f"series {uid}: {problem}")


def order_series(uid: str, slices: Sequence[Slice]) -> OrderedSeries:
    """The slices of series `uid` in order; SeriesError when the geometry cannot give one."""
    if not slices:
        raise _fail(uid, "no slices")
    placed = [s for s in slices if s.geometry is not None and s.geometry.position is not None
              and s.geometry.orientation is not None]
    if not placed:
        return _by_instance_number(uid, slices)
    if len(placed) != len(slices):
        missing = [_label(s) for s in slices if s not in placed]
        raise _fail(uid, f"{len(missing)} of {len(slices)} slices have no Image Position or Orientation (Patient): "
                         f"{', '.join(missing[:5])}")
    tilted = [s for s in slices if s.geometry.gantry_tilt not in (None, 0.0)]
    if tilted:
        raise _fail(uid, f"Gantry/Detector Tilt {tilted[0].geometry.gantry_tilt}° ({_label(tilted[0])}): tilted "
                         "slices would need resampling, which cxrfast does not do")
    orientations = np.array([s.geometry.orientation for s in slices])
    differs = np.abs(orientations - orientations[0]).max(1) > ORIENTATION_TOLERANCE
    if differs.any():
        other = slices[int(np.argmax(differs))]
        raise _fail(uid, f"Image Orientation (Patient) differs between {_label(slices[0])} and {_label(other)}")
    row, column = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(row, column)
    if abs(np.linalg.norm(normal) - 1) > 1e-3:
        raise _fail(uid, f"Image Orientation (Patient) {orientations[0].tolist()} is not two orthogonal unit vectors")
    points = np.array([s.geometry.position for s in slices])
    along = points @ normal
    order = np.argsort(along, kind="stable")
    along, points = along[order], points[order]
    ordered = tuple(slices[i] for i in order)
    steps = np.diff(along)
    same = np.flatnonzero(steps < SAME_POSITION_MM)
    if same.size:
        i = int(same[0])
        raise _fail(uid, f"{_label(ordered[i])} and {_label(ordered[i + 1])} lie at the same position "
                         f"({along[i]:.3f} mm along the normal)")
    drift = points - points[:1] - (along - along[0])[:, None] * normal  # in-plane offsets from the first slice
    extent = along[-1] - along[0]
    if np.linalg.norm(drift, axis=1).max(initial=0.0) > 1e-2 + DRIFT_PER_MM * extent:
        raise _fail(uid, "the slice positions drift within the slice plane (a gantry tilt or a sheared stack): "
                         "the slices would need resampling, which cxrfast does not do")
    spacing = float(np.median(steps)) if steps.size else None
    gaps = np.flatnonzero(steps > GAP * spacing) if steps.size else []
    if len(gaps):
        i = int(gaps[0])
        raise _fail(uid, f"slices are missing between {_label(ordered[i])} and {_label(ordered[i + 1])}: "
                         f"{steps[i]:.3f} mm apart where neighbours are {spacing:.3f} mm")
    return OrderedSeries(uid, ordered, tuple(float(a) for a in along), spacing, "position")


def _by_instance_number(uid: str, slices: Sequence[Slice]) -> OrderedSeries:
    numbers = [None if s.geometry is None else s.geometry.instance_number for s in slices]
    if None in numbers:
        raise _fail(uid, f"{_label(slices[numbers.index(None)])} has neither Image Position (Patient) nor "
                         "Instance Number to order it by")
    if len(set(numbers)) != len(numbers):
        repeated = next(n for n in numbers if numbers.count(n) > 1)
        raise _fail(uid, f"no slice has a position and Instance Number {repeated} repeats")
    ordered = tuple(s for _, s in sorted(zip(numbers, slices), key=lambda pair: pair[0]))
    return OrderedSeries(uid, ordered, None, None, "instance_number")


def group_series(slices: Iterable[tuple[str | None, Slice]]) -> dict[str, list[Slice]]:
    """(Series Instance UID, slice) pairs grouped by series, in the order first seen; a slice
    without a Series Instance UID is an error."""
    series: dict[str, list[Slice]] = {}
    for uid, s in slices:
        if not uid:
            raise SeriesError(f"{_label(s)}: no Series Instance UID to group it by")
        series.setdefault(uid, []).append(s)
    return series
