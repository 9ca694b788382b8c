"""How CT slices become network inputs: a display policy, plain data saved with a cache and
checked when the cache is reused.

- `hu`: Hounsfield units themselves (the cache stores int16), for models that window on the fly;
- named windows, one channel each (`lung`, or `lung+mediastinum+bone` for three channels): the
  linear ramp from level − width/2 to level + width/2 onto [0, 1] (VOI LUT Function
  LINEAR_EXACT, PS3.3 C.11.2.1.3.2), the radiological convention;
- `min_max`: no window, each slice's HU mapped from its own minimum to its maximum onto [0, 1],
  as Wolf et al. prepared LIDC-IDRI for study d (shared/research/methods.md, section 6).

Padding (outside the scanner's field of view) becomes PADDING_FILL_HU first, in every policy:
air, and what Wolf et al.'s LIDC slices held there (they set the padding's stored values to 0,
−1024 HU under LIDC's intercept), so their min–max is reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrfast.errors import ConfigError
from cxrfast.io.dicom_display import window as voi_window
from cxrfast.io.dicom_header import Window

PADDING_FILL_HU = -1024.0
# Named windows (level, width) in HU, as radiology reads them.
WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0), "mediastinum": (50.0, 350.0), "soft_tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0), "brain": (40.0, 80.0), "liver": (60.0, 160.0),
}
HU_RANGE = (-32768, 32767)  # what the int16 cache of the `hu` policy holds


@dataclass(frozen=True)
class CTDisplay:
    """`kind` "hu", "window" (with `windows`, one channel each) or "min_max"."""

    kind: str
    windows: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> CTDisplay:
        """"hu", "min_max", or window names joined by "+"."""
        text = text.strip().lower()
        if text in ("hu", "min_max"):
            return cls(text)
        names = tuple(n.strip() for n in text.split("+"))
        unknown = [n for n in names if n not in WINDOWS]
        if not names or unknown:
            raise ConfigError(f"CT display {text!r}: 'hu', 'min_max' or windows joined by '+' among "
                              f"{', '.join(WINDOWS)}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        return cls("window", names)

    def __str__(self) -> str:
        return "+".join(self.windows) if self.kind == "window" else self.kind

    @property
    def channels(self) -> int:
        return len(self.windows) if self.kind == "window" else 1

    def apply(self, hu: np.ndarray, padding: np.ndarray | None = None,
              value_range: tuple[float, float] | None = None) -> np.ndarray:
        """HU (any shape: a slice, or every value a file can hold), with the padding's mask, ->
        (channels, *shape): int16 HU for "hu", float32 in [0, 1] otherwise. min_max maps
        `value_range` (the slice's, padding filled) or else the values' own range."""
        values = np.asarray(hu, dtype=np.float64)
        if padding is not None:
            values = np.where(padding, PADDING_FILL_HU, values)
        if self.kind == "hu":
            return np.clip(np.rint(values), *HU_RANGE).astype(np.int16)[None]
        if self.kind == "min_max":
            low, high = (values.min(), values.max()) if value_range is None else value_range
            scaled = np.clip((values - low) / (high - low), 0, 1) if high > low else np.zeros_like(values)
            return scaled.astype(np.float32)[None]
        return np.stack([voi_window(values, Window(*WINDOWS[n], "LINEAR_EXACT")) for n in self.windows]).astype(
            np.float32)
