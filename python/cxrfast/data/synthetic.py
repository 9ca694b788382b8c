"""Seeded phantoms that look like frontal (PA) chest radiographs, with labelled findings.

Geometry is in units of L, the shorter image side, with the origin at the image centre
and v pointing down. Image right is the patient's left, as a PA film is hung. Values
are attenuation-like in [0, 1]: higher attenuates more and is brighter on MONOCHROME2.

Everything smooth (anatomy, lung markings, findings) is built on a working grid of at
most `WORK_SIZE` pixels a side and upsampled; only detector noise is drawn at full size.
Random streams are separate for anatomy, labels, texture, noise, each finding and the
nuisance variation (`cxrfast.data.variation`, off by default), so switching one finding or
the variation on or off leaves the rest of the image as it was. Findings are named as
in `cxrfast.data.labels.findings`; the lesion is NIH's "Nodule" (a mass when large), which
CheXpert would file under "Lung Lesion".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np
from PIL import Image

from cxrfast.data.variation import Nuisances, Variation, burn_in, collimate, devices, draw_nuisances, expose, pose

FINDINGS = ("Cardiomegaly", "Pleural Effusion", "Nodule", "Consolidation", "Pneumothorax")
_PREVALENCE = (0.15, 0.12, 0.08, 0.10, 0.05)  # the default mix
MIN_SIZE = 64
WORK_SIZE = 1024
_ANATOMY, _LABELS, _TEXTURE, _NOISE, _FINDING, _VARIATION = range(6)
_BILINEAR, _BICUBIC = Image.Resampling.BILINEAR, Image.Resampling.BICUBIC


@dataclass(frozen=True)
class Finding:
    """How often a finding occurs (prevalence) and how hard it is to see (subtlety, 1 = faint/small)."""

    prevalence: float = 0.0
    subtlety: float = 0.5

    def __post_init__(self) -> None:
        for name in ("prevalence", "subtlety"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {value}")


@dataclass(frozen=True)
class Findings:
    """A `Finding` for each name of `FINDINGS`, each drawn independently per image: `by_name`
    (default: the default mix); a name it leaves out never occurs."""

    by_name: Mapping[str, Finding] = field(default_factory=lambda: dict(zip(FINDINGS, map(Finding, _PREVALENCE))))

    def __post_init__(self) -> None:
        unknown = [name for name in self.by_name if name not in FINDINGS]
        if unknown:
            raise ValueError(f"unknown finding(s) {', '.join(map(repr, unknown))}; known: {', '.join(FINDINGS)}")
        object.__setattr__(self, "by_name", MappingProxyType(dict(self.by_name)))  # frozen all the way down

    @classmethod
    def none(cls) -> Findings:
        return cls({})

    @classmethod
    def only(cls, name: str, subtlety: float = 0.5) -> Findings:
        """`name` in every image and nothing else."""
        return cls({name: Finding(1.0, subtlety)})

    def items(self) -> Iterator[tuple[str, Finding]]:
        return ((name, self.by_name.get(name, Finding(0.0))) for name in FINDINGS)


@dataclass(frozen=True, eq=False)
class Phantom:
    """A phantom radiograph and its ground truth, all `rows` x `columns`.

    `lung_mask` is the aerated lung: it leaves out the heart and mediastinum, pleural
    fluid and the air of a pneumothorax, and keeps consolidated lung and nodules.
    `masks[f]` is the region of finding f (all False when absent); for Cardiomegaly it
    is the heart. `cardiothoracic_ratio` is the heart width over the inner thoracic width.
    `nuisances` is what the variation drew for it (the neutral values without variation).
    """

    seed: int
    image: np.ndarray
    lung_mask: np.ndarray
    heart_mask: np.ndarray
    labels: dict[str, int]
    masks: dict[str, np.ndarray] = field(repr=False)
    cardiothoracic_ratio: float
    nuisances: Nuisances = Nuisances()


@dataclass(frozen=True, eq=False)
class _Grid:
    """Working-grid pixel centres in L units: u is (1, w) and v (h, 1) on the detector, both
    (h, w) in the coordinates of a patient turned on it."""

    u: np.ndarray
    v: np.ndarray
    pixel: float  # working pixel size in L

    @property
    def shape(self) -> tuple[int, int]:
        return self.v.shape[0], self.u.shape[1]

    def offsets(self, window: tuple[slice, slice], centre: tuple[int, int]):
        """(du, dv) of the window's pixels from the centre pixel's."""
        (rows, cols), (r, c) = window, centre
        if self.u.shape[0] == 1:  # axis-aligned: u varies along the columns only, v along the rows
            return self.u[:, cols] - self.u[0, c], self.v[rows] - self.v[r, 0]
        return self.u[rows, cols] - self.u[r, c], self.v[rows, cols] - self.v[r, c]


def _grid(rows: int, columns: int) -> _Grid:
    step = max(1.0, max(rows, columns) / WORK_SIZE)
    h, w = round(rows / step), round(columns / step)
    length = min(rows, columns)
    u = ((np.arange(w) + 0.5) * (columns / w) - columns / 2) / length
    v = ((np.arange(h) + 0.5) * (rows / h) - rows / 2) / length
    return _Grid(u[None, :].astype(np.float32), v[:, None].astype(np.float32), columns / w / length)


def _resize(a: np.ndarray, shape: tuple[int, int], resample=_BILINEAR) -> np.ndarray:
    if a.shape == shape:
        return a
    return np.asarray(Image.fromarray(a.astype(np.float32, copy=False)).resize(shape[::-1], resample))


def _sided(left, if_left: float, if_right: float):
    """Per-column value for the patient's left or right (float32, unlike np.where on Python floats)."""
    return np.where(left, np.float32(if_left), np.float32(if_right))


def _smoothstep(x):
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _lerp(obvious: float, subtle: float, subtlety: float) -> float:
    return obvious + (subtle - obvious) * subtlety


def _superellipse(dx, dy, rx, ry, p: float = 2.0):
    """(rho, distance) for |dx/rx|^p + |dy/ry|^p = rho^p: distance ~ (1 - rho) / |grad rho|,
    positive inside, first-order accurate near the boundary, which is where it is used."""
    x, y = np.abs(dx) / rx, np.abs(dy) / ry
    xp, yp = x ** (p - 1), y ** (p - 1)
    rho = (xp * x + yp * y) ** (1.0 / p)
    grad = np.hypot(xp / rx, yp / ry) / np.maximum(rho, 1e-6) ** (p - 1)
    return rho, (1.0 - rho) / np.maximum(grad, 1e-6)


def _bone(offset, radius):
    """Projected density across a long bone: dense cortex over lighter marrow, so edges show."""
    r2, offset2 = radius * radius, offset * offset
    cortex = np.sqrt(np.maximum(r2 - offset2, 0.0))
    marrow = np.sqrt(np.maximum(0.42 * r2 - offset2, 0.0))
    return (cortex - 0.6 * marrow) / radius


def _value_noise(rng: np.random.Generator, y, x):
    """Gaussian lattice values blended with smoothstep weights at lattice coordinates y, x >= 0."""
    iy, ix = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
    fy, fx = _smoothstep(y - iy), _smoothstep(x - ix)
    lattice = rng.standard_normal((int(iy.max()) + 2, int(ix.max()) + 2), dtype=np.float32)
    top = lattice[iy, ix] + (lattice[iy, ix + 1] - lattice[iy, ix]) * fx
    bottom = lattice[iy + 1, ix] + (lattice[iy + 1, ix + 1] - lattice[iy + 1, ix]) * fx
    return top + (bottom - top) * fy


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float, pixel: float) -> np.ndarray:
    """Unit-variance noise correlated over `cell` (L units): a bicubic-upsampled lattice."""
    h, w = shape
    lattice = rng.standard_normal((max(2, math.ceil(h * pixel / cell) + 1), max(2, math.ceil(w * pixel / cell) + 1)),
                                  dtype=np.float32)
    fine = _resize(lattice, shape, _BICUBIC)
    return fine / max(float(fine.std()), 1e-6)


@dataclass(frozen=True)
class _Anatomy:
    """Per-image jitter of the normal chest; sided values are (right lung, left lung)."""

    scale: float
    cx: float
    lung_dc: tuple[float, float]  # lung centre, lateral from the midline
    lung_rx: tuple[float, float]
    lung_vc: float
    lung_ry: float
    dome: tuple[float, float]  # top of each hemidiaphragm; the right one is higher
    dome_curve: float
    mediastinum: float
    ctr: float
    heart_left: float  # fraction of the heart width left of the midline
    heart_tilt: float
    heart_minor: float
    rib_first: float
    rib_spacing: float
    rib_radius: float
    rib_shift: float  # left ribs relative to right
    clavicle_v: float
    clavicle_slope: float
    body_width: float
    shoulder_v: float
    gain: float
    offset: float
    noise: float


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    s = rng.uniform(0.92, 1.04)
    rx_r = 0.165 * s * rng.uniform(0.95, 1.05)
    vc = rng.normal(0.0, 0.012) + 0.05 * s
    ry = 0.40 * s * rng.uniform(0.95, 1.04)
    dome_r = vc + 0.15 * s * rng.uniform(0.9, 1.1)
    return _Anatomy(
        scale=s,
        cx=float(np.clip(rng.normal(0.0, 0.012), -0.03, 0.03)),
        lung_dc=(0.20 * s, 0.20 * s * rng.uniform(0.97, 1.0)),
        lung_rx=(rx_r, rx_r * rng.uniform(0.93, 0.99)),
        lung_vc=vc,
        lung_ry=ry,
        dome=(dome_r, dome_r + s * rng.uniform(0.015, 0.04)),
        dome_curve=0.10 * s * rng.uniform(0.8, 1.2),
        mediastinum=0.042 * s * rng.uniform(0.9, 1.1),
        ctr=rng.uniform(0.40, 0.47),
        heart_left=rng.uniform(0.6, 0.68),
        heart_tilt=rng.uniform(0.35, 0.6),
        heart_minor=rng.uniform(0.66, 0.76),
        rib_first=vc - ry + 0.035 * s * rng.uniform(0.8, 1.2),
        rib_spacing=0.062 * s * rng.uniform(0.95, 1.08),
        rib_radius=0.0125 * s * rng.uniform(0.9, 1.1),
        rib_shift=rng.normal(0.0, 0.006),
        clavicle_v=vc - ry + 0.10 * s * rng.uniform(0.8, 1.2),
        clavicle_slope=rng.uniform(0.1, 0.25),
        body_width=0.47 * s * rng.uniform(0.95, 1.06),
        shoulder_v=vc - ry - 0.12 * s * rng.uniform(0.85, 1.15),
        gain=rng.uniform(0.92, 1.08),
        offset=rng.uniform(0.0, 0.03),
        noise=rng.uniform(0.7, 1.3),
    )


class _Chest:
    """The normal chest on the working grid: signed distances and densities."""

    def __init__(self, g: _Grid, an: _Anatomy, ctr: float):
        self.g, self.an = g, an
        s, u, v = an.scale, g.u, g.v
        self.edge = max(1.5 * g.pixel, 0.004)  # blur of organ borders
        self.left = u >= an.cx  # the patient's left, image right
        self.d = np.abs(u - an.cx)  # lateral distance from the midline
        self.dc = _sided(self.left, an.lung_dc[1], an.lung_dc[0])
        self.rx = _sided(self.left, an.lung_rx[1], an.lung_rx[0])

        # Lung outline: the thoracic cage (apex, lateral walls), the domes, the mediastinum and heart.
        _, self.cage = _superellipse(self.d - self.dc, v - an.lung_vc, self.rx, an.lung_ry, 2.4)
        self.below_dome = self.dome_at(self.d, self.left) - v  # > 0 above the diaphragm
        heart_rho, self.heart = self._heart(ctr)
        knob_v = an.lung_vc - 0.17 * s
        knob_rho, knob = _superellipse(u - an.cx - an.mediastinum, v - knob_v, 0.022 * s, 0.032 * s)
        self.lung = np.minimum(np.minimum(self.cage, self.below_dome),
                               np.minimum(np.minimum(self.d - an.mediastinum, -self.heart), -knob))
        self.lung_soft = self.inside(self.lung)
        # Air in the projection: thinnest at the lung edges, so the lungs darken centrally.
        self.air = self.lung_soft * (0.6 + 0.4 * _smoothstep(self.lung / (0.08 * s)))

        # Sloping trapezius from the neck, rounding over the shoulder.
        shoulder = np.sqrt(1.0 - (1.0 - np.clip((v - an.shoulder_v) / (0.2 * s), 0.0, 1.0)) ** 2.5)
        width = 0.09 * s + (an.body_width - 0.09 * s) * shoulder
        body = np.sqrt(np.clip(1.0 - ((u - an.cx) / width) ** 2, 0.0, 1.0))  # elliptic cross-section
        self.thorax = _smoothstep(self.below_dome / (0.03 * s) + 0.5)  # above the diaphragm
        self.density = 0.5 * body * (1.0 + 0.12 * v) + 0.08 * (1.0 - self.thorax) * body
        # The heart and aorta only add where they are: above the diaphragm.
        self.density += 0.12 * np.sqrt(np.clip(1.0 - heart_rho * heart_rho, 0.0, None)) * self.thorax
        self.density += 0.04 * np.sqrt(np.clip(1.0 - knob_rho * knob_rho, 0.0, None))
        self.density += self._spine_and_trachea()
        self.density += self._ribs() + self._clavicles()

    def inside(self, distance):
        return _smoothstep(distance / self.edge + 0.5)

    def side(self, left: bool):
        return self.left if left else ~self.left

    def dome_at(self, d, left):
        """Height v of the hemidiaphragm at lateral distance `d` on the given side(s)."""
        an = self.an
        dc = _sided(left, an.lung_dc[1], an.lung_dc[0])
        rx = _sided(left, an.lung_rx[1], an.lung_rx[0])
        top = _sided(left, an.dome[1], an.dome[0])
        # Highest a little medial of the lung centre; steep down to the costophrenic angle,
        # nearly flat medially where the heart rests on it.
        across = (d - dc + 0.25 * rx) / rx
        return top + an.dome_curve * across * across * _sided(across > 0, 1.0, 0.25)

    def _heart(self, ctr: float):
        """Tilted ellipse whose horizontal extent is `ctr` of the inner thoracic width."""
        an, u, v = self.an, self.g.u, self.g.v
        thorax = sum(an.lung_dc) + sum(an.lung_rx)
        half = 0.5 * ctr * thorax
        cos, sin = math.cos(an.heart_tilt), math.sin(an.heart_tilt)
        minor = an.heart_minor * half
        major = math.sqrt((half * half - (minor * sin) ** 2) / (cos * cos))
        centre_u = an.cx + 2 * half * (an.heart_left - 0.5)
        # The widest points sit off the centre line; keep both above the domes so the
        # silhouette keeps its full width.
        skew = (major * major - minor * minor) * sin * cos / half
        tall = math.hypot(major * sin, minor * cos)
        left_dome = float(self.dome_at(abs(centre_u + half - an.cx), True))
        right_dome = float(self.dome_at(abs(centre_u - half - an.cx), False))
        margin = 0.015 * an.scale
        centre_v = min(an.dome[1] - 0.4 * tall, left_dome - skew - margin, right_dome + skew - margin)
        du, dv = u - centre_u, v - centre_v
        return _superellipse(du * cos + dv * sin, dv * cos - du * sin, major, minor)

    def _spine_and_trachea(self):
        an, u, v = self.an, self.g.u, self.g.v
        s = an.scale
        vertebrae = 1.0 + 0.2 * np.cos(2 * np.pi * (v - an.rib_first) / (0.055 * s))  # bodies and discs
        spine = 0.06 * _bone(u - an.cx, 0.034 * s) * vertebrae
        carina = an.lung_vc - 0.13 * s
        air_column = np.sqrt(np.clip(1.0 - ((u - an.cx) / (0.014 * s)) ** 2, 0, 1))
        trachea = 0.08 * air_column * _smoothstep((carina - v) / (0.03 * s))
        return spine - trachea

    def _ribs(self):
        """Posterior ribs: arcs convex upward, steeper laterally, spaced wider going down."""
        an, v = self.an, self.g.v
        s = an.scale
        peak = 0.55 * (self.dc + self.rx)
        bend = _sided(self.d < peak, 2.0 / s, 4.0 / s) * (1.6 - 0.8 * _smoothstep((v - an.rib_first) / (0.5 * s)))
        level = v - bend * (self.d - peak) ** 2 - _sided(self.left, an.rib_shift, 0.0)
        n = 12
        spacing = an.rib_spacing * (1.0 + 0.025 * np.arange(n))
        levels = an.rib_first + np.concatenate(([0.0], np.cumsum(spacing[:-1])))
        radius = an.rib_radius * (1.0 + 0.03 * np.arange(n))
        nearest = np.clip(np.searchsorted((levels[1:] + levels[:-1]) / 2, level), 0, n - 1)
        offset = level - levels[nearest].astype(np.float32)
        extent = _smoothstep((self.cage + 0.03 * s) / (0.02 * s)) * _smoothstep((self.d - 0.025 * s) / (0.02 * s))
        return 0.06 * _bone(offset, radius[nearest].astype(np.float32)) * extent * (0.35 + 0.65 * self.thorax)

    def _clavicles(self):
        an, v, d = self.an, self.g.v, self.d
        s = an.scale
        centre = an.clavicle_v - an.clavicle_slope * d + 0.012 * s * np.sin(np.pi * d / (0.3 * s))
        extent = _smoothstep((d - 0.015 * s) / (0.02 * s)) * _smoothstep((0.37 * s - d) / (0.03 * s))
        return 0.11 * _bone(v - centre, 0.016 * s) * extent

    def lung_markings(self, rng: np.random.Generator):
        """Vessels radiating from the hila, thinning and fading outward, plus the hilar shadows.

        Ridges of noise on a lattice in polar coordinates about each hilum, long along the
        radius and short across it, come out as branching lines running outward.
        """
        an, g = self.an, self.g
        s = an.scale
        lateral = _sided(self.left, 1.0, -1.0)
        hilum_u = an.cx + lateral * (an.mediastinum + 0.035 * s)
        root_u = an.cx + lateral * (an.mediastinum - 0.01 * s)  # vessels converge out of sight
        hilum_v = an.lung_vc - _sided(self.left, 0.09, 0.07) * s  # the left hilum sits higher
        du, dv = (g.u - root_u) * lateral, g.v - hilum_v
        radius = np.hypot(du, dv)
        # Vessels meander: warp the angle with smooth noise. The seam at 0 points medially.
        angle = np.mod(np.arctan2(dv, du) + np.pi + 0.08 * _smooth_noise(rng, g.shape, 0.15 * s, g.pixel), 2 * np.pi)
        # Ridge sharpness for a vessel width (L units) tapering from the hilum outward.
        width = 0.005 * s + 0.015 * s * np.exp(-radius / (0.1 * s))
        vessels = 0.0
        for weight, (length, cell) in ((0.6, (0.15, 0.25)), (0.4, (0.08, 0.1))):
            sharpness = np.maximum(radius * cell / width, 1.0)
            noise = _value_noise(rng, radius / (length * s), angle / cell)
            vessels = vessels + weight * (1.0 - np.minimum(np.abs(noise) * sharpness, 1.0)) ** 2
        mottling = 0.012 * _smooth_noise(rng, g.shape, 0.03 * s, g.pixel)
        markings = 0.12 * vessels * (0.45 + np.exp(-radius / (0.12 * s))) + mottling
        to_hilum = np.hypot(g.u - hilum_u, dv)
        hila = 0.07 * np.exp(-((to_hilum / (0.035 * s)) ** 2))
        return markings, hila

    def lung_point(self, rng: np.random.Generator, margin: float) -> tuple[int, int]:
        """A random working-grid pixel at least `margin` inside the lungs (the deepest if none)."""
        candidates = np.flatnonzero(self.lung > margin)
        flat = candidates[rng.integers(len(candidates))] if len(candidates) else int(np.argmax(self.lung))
        return divmod(int(flat), self.g.shape[1])


def _window(g: _Grid, centre: tuple[int, int], radius: float) -> tuple[slice, slice]:
    """Slices of the working grid around `centre` covering `radius` (L units)."""
    reach = math.ceil(radius / g.pixel) + 2
    return tuple(slice(max(0, c - reach), min(n, c + reach + 1)) for c, n in zip(centre, g.shape))


def _effusion(chest: _Chest, rng: np.random.Generator, subtlety: float):
    """Dependent fluid in one pleural space: fills the costophrenic angle and rises laterally
    in a meniscus. It replaces lung air and is as dense as the soft tissue around it, so
    the dome's outline is lost in it (the silhouette sign)."""
    an, v = chest.an, chest.g.v
    s = an.scale
    left = bool(rng.integers(2))
    height = _lerp(0.50, 0.12, subtlety) * s * rng.uniform(0.85, 1.15)
    dc, rx = an.lung_dc[left], an.lung_rx[left]
    angle = float(chest.dome_at(dc + 0.85 * rx, left))  # costophrenic angle
    lateral = np.clip((chest.d - dc + rx) / (2 * rx), 0.0, 1.0)
    surface = angle - height * (0.6 + 0.4 * lateral * lateral)
    pleural_space = chest.inside(chest.lung) * chest.side(left)
    return _smoothstep((v - surface) / (0.03 * s)) * pleural_space


def _pneumothorax(chest: _Chest, rng: np.random.Generator, subtlety: float):
    """Pleural air between chest wall and a retracted lung, widest at the apex; the visceral
    pleura shows as a thin line, no vessels cross the air, and the retracted lung, holding
    less air, is denser (the `collapse` of its air on that side)."""
    an, g = chest.an, chest.g
    s = an.scale
    left = bool(rng.integers(2))
    widest = _lerp(0.14, 0.03, subtlety) * s * rng.uniform(0.85, 1.15)
    apex = an.lung_vc - an.lung_ry
    gap = widest * np.clip((an.dome[left] - g.v) / (an.dome[left] - apex), 0.0, 1.0) ** 0.8
    on_side = chest.side(left)
    space = np.where(on_side, np.minimum(chest.lung, gap - chest.cage), -1.0)
    width = max(0.003 * s, 0.6 * g.pixel)
    line = np.exp(-(((chest.cage - gap) / width) ** 2)) * chest.lung_soft * on_side * _smoothstep(gap / (3 * width))
    collapse = _lerp(0.4, 0.1, subtlety) * on_side
    return space, line, _lerp(0.12, 0.05, subtlety), _lerp(0.10, 0.05, subtlety), collapse


def _nodule(chest: _Chest, rng: np.random.Generator, subtlety: float):
    """A lobulated sphere inside a lung; a mass when wider than about 3 cm (0.086 L)."""
    g, s = chest.g, chest.an.scale
    radius = max(_lerp(0.07, 0.014, subtlety) * s * rng.uniform(0.85, 1.15), 1.5 * g.pixel)
    contrast = _lerp(0.26, 0.08, subtlety)
    centre = chest.lung_point(rng, 1.2 * radius)
    window = _window(g, centre, 1.2 * radius)
    du, dv = g.offsets(window, centre)
    theta = np.arctan2(dv, du)
    phase = rng.uniform(0, 2 * np.pi, 2)
    outline = radius * (1.0 + 0.08 * np.sin(3 * theta + phase[0]) + 0.04 * np.sin(5 * theta + phase[1]))
    rho = np.hypot(du, dv) / outline
    return window, contrast * np.sqrt(np.clip(1.0 - rho * rho, 0.0, None)), rho < 1.0


def _consolidation(chest: _Chest, rng: np.random.Generator, subtlety: float):
    """Patchy, ill-defined airspace opacity confined to the lung."""
    g, s = chest.g, chest.an.scale
    rx = _lerp(0.16, 0.06, subtlety) * s * rng.uniform(0.8, 1.2)
    ry = rx * rng.uniform(0.7, 1.3)
    contrast = _lerp(0.30, 0.10, subtlety)
    centre = chest.lung_point(rng, 0.04 * s)
    window = _window(g, centre, max(rx, ry))
    rho, _ = _superellipse(*g.offsets(window, centre), rx, ry)
    patches = np.clip(0.65 + 0.35 * _smooth_noise(rng, rho.shape, 0.04 * s, g.pixel), 0.0, 1.0)
    opacity = contrast * _smoothstep((1.0 - rho) / 0.5) * patches * chest.lung_soft[window]
    return window, opacity, opacity > 0.3 * contrast


def _breathe(an: _Anatomy, depth: float) -> _Anatomy:
    """The anatomy at another depth of inspiration: the lungs lengthen (or shorten) downward
    from fixed apices, the domes descend and flatten, and the ribs spread."""
    if depth == 1.0:
        return an
    longer = an.lung_ry * (depth - 1.0)
    return replace(an, lung_ry=an.lung_ry + longer, lung_vc=an.lung_vc + longer,
                   dome=(an.dome[0] + 2 * longer, an.dome[1] + 2 * longer), dome_curve=an.dome_curve / depth,
                   rib_spacing=an.rib_spacing * depth)


def make_phantom(seed: int, rows: int = 512, columns: int | None = None, findings: Findings = Findings(),
                 noise: float = 1.0, variation: Variation = Variation()) -> Phantom:
    """A chest-radiograph-like phantom; the same arguments always give the same phantom.

    `noise` scales the detector noise (0 for a noise-free image). `variation` adds what varies
    between real radiographs and is not disease (none by default); the masks keep to the
    anatomy, under a shutter or a device as elsewhere.
    """
    columns = rows if columns is None else columns
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if min(rows, columns) < MIN_SIZE:
        raise ValueError(f"rows and columns must be at least {MIN_SIZE}, not {rows}x{columns}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, not {noise}")

    def stream(*key: int) -> np.random.Generator:
        return np.random.default_rng([int(seed), *key])

    nuisances = draw_nuisances(stream(_VARIATION), variation, columns / rows) if variation.active else Nuisances()
    an = _breathe(_draw_anatomy(stream(_ANATOMY)), nuisances.inspiration)
    draws = stream(_LABELS).random(len(FINDINGS))
    labels = {name: int(u < f.prevalence) for (name, f), u in zip(findings.items(), draws)}
    finding_rng = {name: stream(_FINDING, k) for k, name in enumerate(FINDINGS)}
    subtlety = {name: f.subtlety for name, f in findings.items()}

    detector = _grid(rows, columns)
    u, v, scale = pose(detector.u, detector.v, nuisances)
    g = _Grid(u, v, detector.pixel * scale)
    ctr = an.ctr
    if labels["Cardiomegaly"]:
        ctr = 0.5 + _lerp(0.15, 0.025, subtlety["Cardiomegaly"]) + finding_rng["Cardiomegaly"].uniform(0, 0.02)
    chest = _Chest(g, an, ctr)
    density, air = chest.density, chest.air
    # Masks come from the sign of working-grid fields, upsampled: distances or 0.5-offset fractions.
    aerated = chest.lung
    regions = {}  # finding -> field, > 0 inside
    markings_weight = 1.0

    if labels["Pleural Effusion"]:
        fluid = _effusion(chest, finding_rng["Pleural Effusion"], subtlety["Pleural Effusion"])
        air = air * (1.0 - fluid)
        regions["Pleural Effusion"] = fluid - 0.5
        aerated = np.minimum(aerated, 0.5 - fluid)
    if labels["Pneumothorax"]:
        space, line, darker, line_density, collapse = _pneumothorax(chest, finding_rng["Pneumothorax"],
                                                                    subtlety["Pneumothorax"])
        pleural_air = chest.inside(space)
        air = air * (1.0 - collapse * (1.0 - pleural_air))
        density = density - darker * pleural_air + line_density * line
        markings_weight = 1.0 - pleural_air
        regions["Pneumothorax"] = space
        aerated = np.minimum(aerated, -space)

    markings, hila = chest.lung_markings(stream(_TEXTURE))
    density = density - 0.30 * air + markings * air * markings_weight + hila
    for name, render in (("Nodule", _nodule), ("Consolidation", _consolidation)):
        if labels[name]:
            window, opacity, inside = render(chest, finding_rng[name], subtlety[name])
            density[window] += opacity
            region = np.full(g.shape, -1.0, np.float32)
            region[window] = np.where(inside, 1.0, -1.0)
            regions[name] = region

    density = density + devices(g.u, g.v, g.pixel, nuisances)
    value = collimate(expose(an.offset + an.gain * density, detector.v, nuisances), detector.u, detector.v,
                      detector.pixel, nuisances)
    full = (rows, columns)
    image = _resize(burn_in(value, nuisances, detector.pixel), full)
    if noise > 0:
        # Quantum noise grows where fewer photons arrive (brighter), plus electronic noise.
        sigma = (noise * an.noise * nuisances.noise) * (0.004 + 0.005 * np.exp(1.5 * image))
        image = image + sigma * stream(_NOISE).standard_normal(full, dtype=np.float32)
    image = np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)

    heart = np.minimum(chest.heart, chest.below_dome)
    heart_mask = _resize(heart, full) > 0
    masks = {name: _resize(regions[name], full) > 0 if name in regions else np.zeros(full, bool) for name in FINDINGS}
    if labels["Cardiomegaly"]:
        masks["Cardiomegaly"] = heart_mask
    return Phantom(
        seed=int(seed),
        image=image,
        lung_mask=_resize(aerated, full) > 0,
        heart_mask=heart_mask,
        labels=labels,
        masks=masks,
        cardiothoracic_ratio=float(ctr),
        nuisances=nuisances,
    )


def make_dataset(n: int, seed: int = 0, rows: int = 256, columns: int | None = None,
                 findings: Findings = Findings(), noise: float = 1.0,
                 variation: Variation = Variation()) -> Iterator[Phantom]:
    """Phantoms for seeds `seed`, `seed + 1`, ..., `seed + n - 1`."""
    for i in range(n):
        yield make_phantom(seed + i, rows, columns, findings, noise, variation)


def to_stored(image: np.ndarray, bits_stored: int = 12, photometric_interpretation: str = "MONOCHROME2",
              pixel_representation: int = 0) -> np.ndarray:
    """Attenuation-like [0, 1] values -> stored integers of `bits_stored` bits.

    MONOCHROME2 stores the value, MONOCHROME1 its complement, so that both display
    alike; signed storage shifts the range down by half. Bits Allocated is 8 up to 8
    bits stored, else 16, and sets the dtype.
    """
    if photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric_interpretation must be MONOCHROME1 or 2, not {photometric_interpretation!r}")
    if not 2 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be in 2..16, not {bits_stored}")
    if pixel_representation not in (0, 1):
        raise ValueError(f"pixel_representation must be 0 or 1, not {pixel_representation}")
    image = np.asarray(image)
    if image.dtype.kind != "f" or not np.all((image >= 0) & (image <= 1)):
        raise ValueError("image must be floating point with every value in [0, 1]")
    top = (1 << bits_stored) - 1
    stored = np.rint(image * top).astype(np.int32)
    if photometric_interpretation == "MONOCHROME1":
        stored = top - stored  # exact complement, so the two interpretations mirror each other
    if pixel_representation:
        stored -= 1 << (bits_stored - 1)
    return stored.astype(f"{'i' if pixel_representation else 'u'}{1 if bits_stored <= 8 else 2}")
