"""CT series as `prepare` caches them: which slices, in what order, and how each becomes pixels.

Every DICOM file's header is read first; the files are grouped by Series Instance UID and each
series put in order along its slice normal (`cxrfast.io.dicom_series`). A series that cannot be
ordered makes each of its files an error with the reason; a file whose header cannot be read
is an error of its own. Of each ordered series, every `slice_step`-th slice is kept (from the
first), so a 500-slice scan does not outweigh a 50-slice one `slice_step`-fold; a kept slice whose
body covers less than `min_body_share` of the image (pixels above BODY_HU, the padding counted as
outside) is skipped when it is read. Skipped slices are listed with the reason, never dropped
silently. Each cached slice carries its series, index in the series, position along the normal
and the series' spacing into the cache manifest. An Enhanced CT file's frames are slices too,
placed by its functional groups and cached as `<file>#<frame>`.

The display policy (`cxrfast.data.ct_display`) turns a slice's Hounsfield units into what the
cache stores: one window or `min_max` (one channel of display values), several windows (a
channel each), or `hu` (the units themselves, windowed when the cache is read).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cxrfast import _C
from cxrfast.data.ct_display import PADDING_FILL_HU, CTDisplay
from cxrfast.data.sources import Source, header_metadata
from cxrfast.errors import ConfigError, CxrfastError, DataError
from cxrfast.io import read_dicom, read_header
from cxrfast.io.dicom_display import modality, modality_range, padding_mask, stored_domain
from cxrfast.io.dicom_pixels import pixel_format
from cxrfast.io.dicom import table_key
from cxrfast.io.dicom_series import Slice, SeriesError, group_series, order_series

BODY_HU = -500.0  # soft tissue and bone; lung and air lie below
# What each kept slice adds to the source manifest's columns.
CT_COLUMNS = ("series_instance_uid", "slice_index", "slice_position", "slice_spacing", "ordered_by")


@dataclass(frozen=True)
class CTSlices:
    display: CTDisplay
    slice_step: int = 1
    min_body_share: float = 0.0

    def __post_init__(self):
        if self.slice_step < 1 or not 0 <= self.min_body_share < 1:
            raise ConfigError(f"slice_step must be at least 1 and min_body_share in [0, 1), not {self.slice_step} "
                              f"and {self.min_body_share}")

    def settings(self) -> dict:
        """What `cache.json` records, so a cache is reused only with the same policy."""
        return {"display": str(self.display), "slice_step": self.slice_step, "min_body_share": self.min_body_share}


@dataclass(frozen=True)
class SlicePlan:
    kept: list[Source]  # in series order, with CT_COLUMNS
    skipped: dict[str, str]  # name -> why it is not cached
    errors: dict[str, str]  # name -> why it cannot be


def plan_slices(sources: list[Source], ct: CTSlices, advance: Callable[[], None] = lambda: None) -> SlicePlan:
    """The slices to cache, in order, and what is skipped or cannot be ordered; `advance` is
    called after each header."""
    errors: dict[str, str] = {}
    by_name: dict[str, Source] = {}
    headers = []
    for source in sources:
        try:
            info = read_header(source.path)
        except CxrfastError as e:
            errors[source.name] = f"{type(e).__name__}: {e}"
            continue
        finally:
            advance()
        by_name[source.name] = source
        if info.frame_geometry:  # an enhanced CT: each frame a slice
            headers += [(info.series_instance_uid, Slice(source.name, g, frame)) for frame, g in
                        enumerate(info.frame_geometry)]
        else:
            headers.append((info.series_instance_uid, Slice(source.name, info.geometry)))
    for name in {s.name for uid, s in headers if not uid}:
        errors[name] = "SeriesError: no Series Instance UID to group it by"
    kept, skipped = [], {}
    for uid, slices in group_series((uid, s) for uid, s in headers if uid).items():
        try:
            series = order_series(uid, slices)
        except SeriesError as e:
            errors.update({s.name: f"SeriesError: {e}" for s in slices})
            continue
        for index, s in enumerate(series.slices):
            name = s.name if s.frame is None else f"{s.name}#{s.frame}"  # a frame is cached as its own image
            if index % ct.slice_step:
                skipped[name] = f"slice {index} of series {uid}: every {ct.slice_step} slices kept"
                continue
            position = "" if series.positions is None else f"{series.positions[index]:.4f}"
            spacing = "" if series.spacing is None else f"{series.spacing:.4f}"
            columns = dict(zip(CT_COLUMNS, (uid, str(index), position, spacing, series.ordered_by)))
            source = by_name[s.name]
            kept.append(replace(source, name=name, columns={**source.columns, **columns}, frame=s.frame))
    return SlicePlan(kept, skipped, errors)


def load_slice(path: Path, ct: CTSlices, frame: int | None = None) -> tuple[np.ndarray, float, dict[str, str]]:
    """A slice's values through the policy (float32 (channels, rows, columns): display values in
    [0, 1], or HU), its body share (NaN unless `ct` filters on it) and its header's metadata.

    The policy is evaluated once over every stored value the file can hold (its HU, and whether
    it is padding) and the pixels mapped through that table in one native pass, as the DICOM
    reader's own stages are; min_max first takes the slice's range of non-padding values."""
    image = read_dicom(path, stage="stored", frame=frame)
    info, stored = image.info, image.pixels
    if stored.ndim != 2:
        raise DataError(f"{path}: {info.frames} frames of {info.samples_per_pixel} samples without a plane for "
                        "each frame; a CT slice is one frame of one sample (an enhanced CT has its planes)")
    key = table_key(info)
    first, hu, padding = _domain(key) if key is not None else _domain.__wrapped__(info)
    fmt = pixel_format(info, clean=True)
    if ct.display.kind != "min_max":
        table = _window_table(key, ct.display) if key is not None else ct.display.apply(hu, padding)
    else:
        pad = info.padding
        low, high, kept = _C.stored_range(stored, 0, stored.size, fmt, *((pad.low, pad.high) if pad else (1, 0)))
        ends = list(modality_range(low, high, info)) if kept else []
        if kept < stored.size:  # padding shows as PADDING_FILL_HU and takes part in the range
            ends.append(PADDING_FILL_HU)
        table = ct.display.apply(hu, padding, (min(ends), max(ends)))
    out = np.stack([_mapped(stored, fmt, channel, first) for channel in table])
    body = math.nan
    if ct.min_body_share > 0:
        body = float(_mapped(stored, fmt, (hu > BODY_HU) & ~padding, first).mean())
    return out, body, header_metadata(info)


@functools.lru_cache(maxsize=16)
def _domain(info) -> tuple[int, np.ndarray, np.ndarray]:
    """The first stored value and, over every stored value from it, the HU and whether it is padding."""
    domain = stored_domain(info)
    return int(domain[0]), modality(domain, info), padding_mask(domain, info)


@functools.lru_cache(maxsize=16)
def _window_table(key, display: CTDisplay) -> np.ndarray:
    _, hu, padding = _domain(key)
    return np.ascontiguousarray(display.apply(hu, padding), np.float32)  # (channels, stored values)


def _mapped(stored: np.ndarray, fmt, table: np.ndarray, first: int) -> np.ndarray:
    out = np.empty(stored.shape, np.float32)
    _C.map_stored(stored, 0, out, stored.size, fmt, np.ascontiguousarray(table, np.float32), first)
    return out
