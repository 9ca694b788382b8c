"""What varies between real radiographs and is not disease, for phantoms that opt in.

A self-supervised encoder has to learn to ignore these, and a supervised one can learn them as
shortcuts (an electrode taken for a nodule, a portable film's marker for sickness), so a
testbed without them flatters every method. `Variation` sets how strongly each kind varies, 0
(off, the default: phantoms stay as they were) to 1 (the ranges below, roughly those of a
mixed clinical archive). `draw_nuisances` draws one radiograph's worth from its own random
stream, so switching variation on leaves anatomy, labels and findings as they were drawn.

Coordinates are the phantom's: units of L (the shorter image side), origin at the image
centre, v pointing down. Patient coordinates move with the patient (`pose`); detector
coordinates do not (collimation, markers, the heel effect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MARKER_TEXTS = ("PORTABLE", "AP ERECT", "SUPINE", "INSP")


@dataclass(frozen=True)
class Variation:
    """How strongly each nuisance varies, each in [0, 1] (0: never; 1: the full range).

    position: magnification 1 ± 0.15 (patient size), offset ± 0.06 L, rotation ± 6°.
    inspiration: lung height × 1 ± 0.12, the domes moving with it.
    exposure: detector gain and offset, a response curve (gamma 0.75–1.35), the heel effect
        (± 12% from top to bottom), and the noise level × 0.6–1.8.
    devices: ECG electrodes with their leads, and a central venous line (each in a share of
        the images).
    markers: a lead L/R marker and a burned-in text label near the top.
    collimation: the exposed field shuttered to a tilted rectangle inside the film.
    """

    position: float = 0.0
    inspiration: float = 0.0
    exposure: float = 0.0
    devices: float = 0.0
    markers: float = 0.0
    collimation: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"variation {f.name} must be in [0, 1], not {value}")

    @classmethod
    def realistic(cls, strength: float = 1.0) -> Variation:
        """Every kind at `strength`."""
        return cls(**{f.name: strength for f in fields(cls)})

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in fields(self))


@dataclass(frozen=True)
class Nuisances:
    """One radiograph's draw of each nuisance; the neutral values leave a phantom unchanged."""

    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # (u, v) of the patient on the detector
    angle: float = 0.0  # radians, positive turning the patient clockwise on the film
    inspiration: float = 1.0
    gain: float = 1.0
    offset: float = 0.0
    gamma: float = 1.0
    heel: float = 0.0  # relative brightening from top to bottom
    noise: float = 1.0
    electrodes: tuple[tuple[float, float], ...] = ()  # (u, v) in patient coordinates
    line: tuple[tuple[float, float], ...] = ()  # the central line's control points, patient coordinates
    marker: tuple[str, float, float] | None = None  # letter, (u, v) of its top left, detector coordinates
    label: tuple[str, float, float] | None = None
    field: tuple[float, float, float, float, float] | None = None  # left, right, top, bottom, tilt


def draw_nuisances(rng: np.random.Generator, variation: Variation, aspect: float) -> Nuisances:
    """One radiograph's nuisances; `aspect` is columns / rows (the film's half-extents follow)."""
    x = variation
    half_u, half_v = 0.5 * max(aspect, 1.0), 0.5 * max(1.0 / aspect, 1.0)
    drawn: dict = {}
    if x.position:
        drawn.update(zoom=1.0 + 0.15 * x.position * rng.uniform(-1, 1),
                     shift=tuple(0.06 * x.position * rng.uniform(-1, 1, 2)),
                     angle=math.radians(6.0) * x.position * rng.uniform(-1, 1))
    if x.inspiration:
        drawn["inspiration"] = 1.0 + 0.12 * x.inspiration * rng.uniform(-1, 1)
    if x.exposure:
        e = x.exposure
        drawn.update(gain=1.0 + 0.15 * e * rng.uniform(-1, 1), offset=0.06 * e * rng.uniform(-1, 1),
                     gamma=float(np.exp(e * rng.uniform(math.log(0.75), math.log(1.35)))),
                     heel=0.12 * e * rng.uniform(-1, 1), noise=float(np.exp(e * rng.uniform(math.log(0.6), math.log(1.8)))))
    if x.devices:
        if rng.random() < 0.5 * x.devices:  # monitored patients: 3 to 5 electrodes over the chest
            n = int(rng.integers(3, 6))
            drawn["electrodes"] = tuple(zip(rng.uniform(-0.38, 0.38, n).tolist(), rng.uniform(-0.42, 0.2, n).tolist()))
        if rng.random() < 0.3 * x.devices:  # a central line from a subclavian vein to the cavoatrial junction
            side = 1.0 if rng.random() < 0.5 else -1.0
            entry = (side * rng.uniform(0.18, 0.3), rng.uniform(-0.38, -0.3))
            bend = (side * rng.uniform(0.06, 0.12), rng.uniform(-0.32, -0.22))
            tip = (side * rng.uniform(0.0, 0.04), rng.uniform(-0.12, 0.0))
            drawn["line"] = ((side * 0.6, entry[1] - 0.05), entry, bend, tip)
    if x.markers:
        if rng.random() < x.markers:
            letter = "R" if rng.random() < 0.5 else "L"
            side = -1.0 if letter == "R" else 1.0  # R on the patient's right: image left
            drawn["marker"] = (letter, side * rng.uniform(0.3, 0.4) * 2 * half_u, rng.uniform(-0.46, -0.38) * 2 * half_v)
        if rng.random() < 0.5 * x.markers:
            drawn["label"] = (MARKER_TEXTS[int(rng.integers(len(MARKER_TEXTS)))],
                              rng.uniform(-0.1, 0.05) * 2 * half_u, rng.uniform(-0.48, -0.44) * 2 * half_v)
    if x.collimation and rng.random() < 0.7 * x.collimation:
        c = x.collimation
        drawn["field"] = (-half_u + c * rng.uniform(0.0, 0.09), half_u - c * rng.uniform(0.0, 0.09),
                          -half_v + c * rng.uniform(0.0, 0.07), half_v - c * rng.uniform(0.0, 0.05),
                          math.radians(2.0) * c * rng.uniform(-1, 1))
    return Nuisances(**drawn)


def pose(u: np.ndarray, v: np.ndarray, n: Nuisances) -> tuple[np.ndarray, np.ndarray, float]:
    """Detector coordinates -> the patient coordinates seen there, and the scale of an L there."""
    if n.zoom == 1.0 and n.shift == (0.0, 0.0) and n.angle == 0.0:
        return u, v, 1.0
    cos, sin = math.cos(n.angle), math.sin(n.angle)
    du, dv = u - np.float32(n.shift[0]), v - np.float32(n.shift[1])
    pu = ((cos * du + sin * dv) / n.zoom).astype(np.float32)
    pv = ((cos * dv - sin * du) / n.zoom).astype(np.float32)
    return pu, pv, 1.0 / n.zoom


def _distance_to_polyline(u, v, points: np.ndarray) -> np.ndarray:
    """Distance from every (u, v) to the polyline through `points` (K, 2)."""
    best = np.full(np.broadcast_shapes(u.shape, v.shape), np.inf, np.float32)
    for (u0, v0), (u1, v1) in zip(points[:-1], points[1:]):
        du, dv = u1 - u0, v1 - v0
        t = np.clip(((u - u0) * du + (v - v0) * dv) / max(du * du + dv * dv, 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.hypot(u - u0 - t * du, v - v0 - t * dv))
    return best


def _bezier(points, steps: int = 24) -> np.ndarray:
    """Points along the Bezier curve with these control points (de Casteljau)."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    p = [np.asarray(q, np.float64) for q in points]
    while len(p) > 1:
        p = [(1 - t) * a + t * b for a, b in zip(p[:-1], p[1:])]
    return p[0]


def devices(u: np.ndarray, v: np.ndarray, pixel: float, n: Nuisances) -> np.ndarray | float:
    """The devices' density in patient coordinates: metal and plastic are far denser than tissue."""
    if not n.electrodes and not n.line:
        return 0.0
    width = max(0.6 * pixel, 0.002)
    density = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
    for k, (eu, ev) in enumerate(n.electrodes):
        r = np.hypot(u - eu, v - ev)
        pad = np.clip((0.016 - r) / width + 0.5, 0.0, 1.0)  # the foam pad, faint
        snap = np.clip((0.005 - r) / width + 0.5, 0.0, 1.0)  # the metal stud, bright
        density += 0.04 * pad + 0.35 * snap
        # The lead runs from the stud off the film, sagging on the way.
        out = (math.copysign(0.75, eu if eu else 1.0), ev - 0.3 - 0.1 * (k % 3))
        sag = ((eu + out[0]) / 2, max(ev, out[1]) + 0.08)
        density += 0.12 * np.exp(-((_distance_to_polyline(u, v, _bezier(((eu, ev), sag, out))) / width) ** 2))
    if n.line:
        wall = _distance_to_polyline(u, v, _bezier(n.line))
        density += 0.10 * np.exp(-((wall / (1.6 * width)) ** 2))  # radiopaque stripe of the catheter
    return density


def expose(value: np.ndarray, v: np.ndarray, n: Nuisances) -> np.ndarray:
    """The detector's response: gain and offset, a gamma curve, and the heel effect along v."""
    if n.gain == 1.0 and n.offset == 0.0 and n.gamma == 1.0 and n.heel == 0.0:
        return value
    curved = np.clip(value, 0.0, 1.0) ** np.float32(n.gamma)
    return (n.offset + n.gain * curved * (1.0 + n.heel * (v + 0.5))).astype(np.float32)


def collimate(value: np.ndarray, u: np.ndarray, v: np.ndarray, pixel: float, n: Nuisances) -> np.ndarray:
    """Outside the shuttered field no primary beam arrives: the film there stays bright, with
    scatter fading inward from the field's edge."""
    if n.field is None:
        return value
    left, right, top, bottom, tilt = n.field
    cos, sin = math.cos(tilt), math.sin(tilt)
    fu, fv = cos * u + sin * v, cos * v - sin * u
    inside = np.minimum(np.minimum(fu - left, right - fu), np.minimum(fv - top, bottom - fv))
    shutter = np.clip(-inside / max(pixel, 0.003) + 0.5, 0.0, 1.0)
    return (value * (1.0 - shutter) + shutter * (0.92 - 0.1 * np.exp(inside / 0.05))).astype(np.float32)


def burn_in(value: np.ndarray, n: Nuisances, pixel: float) -> np.ndarray:
    """The lead marker and the text label, at full brightness where their glyphs are."""
    if n.marker is None and n.label is None:
        return value
    h, w = value.shape
    glyphs = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(glyphs)
    items = ([(*n.marker, 0.08)] if n.marker else []) + ([(*n.label, 0.03)] if n.label else [])
    for text, du, dv, size in items:
        height = max(6, round(size / pixel))
        draw.text((w / 2 + du / pixel, h / 2 + dv / pixel), text, fill=255, font=ImageFont.load_default(size=height),
                  stroke_width=max(1, height // 10), stroke_fill=255)  # lead letters are solid
    alpha = np.asarray(glyphs, np.float32) / 255.0
    return (value * (1.0 - alpha) + 0.97 * alpha).astype(np.float32)
