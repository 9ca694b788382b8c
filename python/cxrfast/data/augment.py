"""Augmentations for radiographs and CT slices, on batches of images (B, C, H, W) in [0, 1] (one
channel, or a CT slice's windows as channels), any device, each sample with its own parameters
drawn from an explicit generator; a sample's channels move and change together.

Geometry is one resampling per batch: the random resized crop (area and aspect as torchvision's
RandomResizedCrop draws them), a small rotation about the crop's centre and an optional
horizontal flip compose into one affine map per sample, sampled bilinearly by `grid_sample`.
Where a crop is at least twice the output in both directions the source is first area-averaged
by the whole factor k, so that bilinear sampling never skips pixels (it would alias the fine
texture of a film); samples sharing k are pooled together. Segmentation masks follow the same
map, sampled nearest and unfiltered, so that they stay 0 or 1 (`ViewAugment.with_masks`).
Horizontal flips are off by default: laterality matters on a radiograph (the heart is on the
patient's left).

Intensity follows: brightness (added), contrast (scaled about each channel's mean), gamma, then a
Gaussian blur with a per-sample sigma, reflected at the borders (a radiograph's edge continues
its anatomy better than black does); outputs are clamped to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

CROP_TRIES = 10  # as torchvision, then the centre crop of the closest aspect


@dataclass(frozen=True)
class ViewAugment:
    size: tuple[int, int] = (224, 224)
    scale: tuple[float, float] = (0.35, 1.0)  # crop area, as a fraction of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop width / height, drawn log-uniformly
    rotation: float = 10.0  # degrees, uniform in ±rotation
    hflip: float = 0.0  # probability
    brightness: float = 0.2  # added offset, uniform in ±brightness
    contrast: float = 0.2  # factor about the mean, uniform in 1 ± contrast
    gamma: float = 0.2  # exponent exp(u), u uniform in ±gamma
    blur: float = 0.5  # probability
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # output pixels

    def __post_init__(self) -> None:
        if isinstance(self.size, int):
            object.__setattr__(self, "size", (self.size, self.size))
        checks = {"size": min(self.size) >= 1, "scale": 0 < self.scale[0] <= self.scale[1] <= 1,
                  "ratio": 0 < self.ratio[0] <= self.ratio[1], "rotation": 0 <= self.rotation <= 180,
                  "hflip": 0 <= self.hflip <= 1, "brightness": 0 <= self.brightness <= 1,
                  "contrast": 0 <= self.contrast <= 1, "gamma": self.gamma >= 0, "blur": 0 <= self.blur <= 1,
                  "blur_sigma": 0 < self.blur_sigma[0] <= self.blur_sigma[1]}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"ViewAugment.{name} = {getattr(self, name)!r} is out of range")

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """(B, C, H, W) float in [0, 1] -> one augmented view (B, C, *size)."""
        return self._augment(images, None, generator)[0]

    def with_flips(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The view (as `__call__` draws it) and which samples were mirrored, (B,) bool: a
        report's left and right swap with its image."""
        views, _, flips = self._augment(images, None, generator)
        return views, flips

    def with_masks(self, images: Tensor, masks: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The view of `images` and the same crop, turn and flip of their (B, 1, H, W) masks,
        sampled nearest (a mask stays 0 or 1); intensity changes touch the images only."""
        if masks.shape != (images.shape[0], 1, *images.shape[2:]):
            raise ValueError(f"masks {tuple(masks.shape)} must be one channel of the images' {tuple(images.shape)}")
        return self._augment(images, masks, generator)[:2]

    def _augment(self, images: Tensor, masks: Tensor | None, generator: torch.Generator
                 ) -> tuple[Tensor, Tensor | None, Tensor]:
        _check(images)
        b, _, height, width = images.shape
        draw = lambda *shape: torch.rand(*shape, generator=generator).to(images.device)  # noqa: E731
        boxes = crop_boxes(b, height, width, self.scale, self.ratio, generator).to(images.device)
        angles = (draw(b) * 2 - 1) * self.rotation
        flips = draw(b) < self.hflip
        views = resample(images, boxes, angles, flips, self.size)
        moved = None if masks is None else resample(masks.to(images.dtype), boxes, angles, flips, self.size,
                                                     nearest=True)
        brightness, contrast, gamma = draw(b), draw(b), draw(b)  # drawn even when unused: one stream of draws
        if self.brightness or self.contrast or self.gamma:
            views = jitter(views, (brightness * 2 - 1) * self.brightness, 1 + (contrast * 2 - 1) * self.contrast,
                           torch.exp((gamma * 2 - 1) * self.gamma))
        sigma = self.blur_sigma[0] + draw(b) * (self.blur_sigma[1] - self.blur_sigma[0])
        return gaussian_blur(views, torch.where(draw(b) < self.blur, sigma, torch.zeros_like(sigma)),
                             self.blur_sigma[1]), moved, flips

    def views(self, images: Tensor, count: int, generator: torch.Generator) -> list[Tensor]:
        """`count` independent views of every image (SimCLR and MoCo take two)."""
        return [self(images, generator) for _ in range(count)]


@dataclass(frozen=True)
class Crops:
    """`count` views of each image drawn with `augment`. A method's views are a list of these:
    [Crops(ViewAugment(size=224), 2)] for SimCLR; DINO's multi-crop adds small local crops,
    [Crops(global, 2), Crops(ViewAugment(size=96, scale=(0.05, 0.4)), 8)]."""

    augment: ViewAugment
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"Crops.count must be at least 1, not {self.count}")


def draw_crops(images: Tensor, crops: list[Crops] | tuple[Crops, ...], generator: torch.Generator) -> list[Tensor]:
    """Every view `crops` asks for, in order: (B, C, *augment.size) each."""
    return [view for c in crops for view in c.augment.views(images, c.count, generator)]


def resize_center(images: Tensor, size: tuple[int, int] | int, *, nearest: bool = False) -> Tensor:
    """The evaluation view, without randomness: the largest centred crop of the output's aspect,
    resampled (area-prefiltered) to `size`; `nearest` for masks."""
    _check(images)
    size = (size, size) if isinstance(size, int) else tuple(size)
    b, _, height, width = images.shape
    h, w = min(height, width * size[0] / size[1]), min(width, height * size[1] / size[0])
    box = torch.tensor([(height - h) / 2, (width - w) / 2, h, w], dtype=torch.float32, device=images.device)
    return resample(images, box.expand(b, 4), images.new_zeros(b), torch.zeros(b, dtype=torch.bool,
                                                                                  device=images.device), size,
                    nearest=nearest)


def _check(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] < 1 or not images.is_floating_point():
        raise ValueError(f"images must be a float (B, C, H, W) batch, not {images.dtype} {tuple(images.shape)}")


def crop_boxes(count: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
               generator: torch.Generator) -> Tensor:
    """(count, 4) crops as (top, left, height, width) in pixels: area uniform in `scale` of the
    image, aspect log-uniform in `ratio`, placed uniformly inside; the first of CROP_TRIES draws
    that fits, else the centre crop of the aspect closest to the image's."""
    area = height * width * (scale[0] + torch.rand(count, CROP_TRIES, generator=generator) * (scale[1] - scale[0]))
    log_ratio = torch.rand(count, CROP_TRIES, generator=generator) * math.log(ratio[1] / ratio[0]) + math.log(ratio[0])
    aspect = torch.exp(log_ratio)
    w, h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (w <= width) & (h <= height)
    first = fits.float().argmax(1)  # the first fitting try (0 when none fits)
    w, h = w.gather(1, first[:, None])[:, 0], h.gather(1, first[:, None])[:, 0]
    fallback_w = min(width, height * ratio[1]) if width / height > ratio[1] else width
    fallback_h = min(height, width / ratio[0]) if width / height < ratio[0] else height
    found = fits.any(1)
    w = torch.where(found, w, torch.full_like(w, fallback_w))
    h = torch.where(found, h, torch.full_like(h, fallback_h))
    place = torch.rand(count, 2, generator=generator)
    top = torch.where(found, place[:, 0] * (height - h), (height - h) / 2)
    left = torch.where(found, place[:, 1] * (width - w), (width - w) / 2)
    return torch.stack([top, left, h, w], 1)


def affine(boxes: Tensor, angles: Tensor, flips: Tensor, height: int, width: int) -> Tensor:
    """(B, 2, 3) maps from output to source coordinates (affine_grid's normalised ones): the
    output square spans the crop, turned by `angles` degrees (positive turns the image content
    counter-clockwise on screen) about the crop's centre, mirrored left-right where `flips`."""
    top, left, h, w = boxes.unbind(1)
    theta = torch.deg2rad(angles.to(boxes.dtype))
    cos, sin = torch.cos(theta), torch.sin(theta)
    half_w = torch.where(flips, -w, w) / 2
    half_h = h / 2
    # Rotation in pixels (square), then to normalised x (2/width) and y (2/height).
    rows = [torch.stack([cos * half_w, -sin * half_h, left + w / 2], 1) * (2 / width),
            torch.stack([sin * half_w, cos * half_h, top + h / 2], 1) * (2 / height)]
    matrix = torch.stack(rows, 1)
    matrix[:, :, 2] -= 1
    return matrix


def resample(images: Tensor, boxes: Tensor, angles: Tensor, flips: Tensor, size: tuple[int, int], *,
             nearest: bool = False) -> Tensor:
    """The crops, turned and mirrored, sampled to `size`, area-prefiltered where they shrink by 2
    or more. Only the part of the source that the crops cover is pooled, in k × k blocks aligned
    with the crops' top-left corner. `nearest` (masks): the nearest source pixel, unfiltered."""
    b, channels, height, width = images.shape
    matrix = affine(boxes, angles, flips, height, width).to(images.dtype)
    factor = torch.minimum(boxes[:, 2] / size[0], boxes[:, 3] / size[1]).floor().clamp(min=1).long()
    if nearest:
        factor = torch.ones_like(factor)
    out = images.new_empty(b, channels, *size)
    groups = factor.unique().tolist()
    for k in groups:
        # One group (a single image, or crops of like size): no copy of the whole batch.
        members = slice(None) if len(groups) == 1 else (factor == k).nonzero()[:, 0]
        (top, rows), (left, columns) = _covered(matrix[members], height, width, k)
        source = images[members][..., top:top + rows * k, left:left + columns * k]
        if k > 1:  # a block past the image's edge averages the pixels it has
            source = F.avg_pool2d(source, k, ceil_mode=True)
        local = _to_region(matrix[members], height, width, (top, rows * k), (left, columns * k))
        grid = _grid(local, size)
        out[members] = F.grid_sample(source, grid, mode="nearest" if nearest else "bilinear", padding_mode="border",
                                     align_corners=False)
    return out


def _grid(matrix: Tensor, size: tuple[int, int]) -> Tensor:
    """`F.affine_grid(matrix, (B, 1, *size), align_corners=False)` by broadcasting: affine_grid
    multiplies an (H·W, 3) grid by each 3 × 2 map, a matrix product with an inner size of 3 that
    runs several times slower on the CPU than these sums."""
    height, width = size
    x = (torch.arange(width, dtype=matrix.dtype, device=matrix.device) * 2 + 1) / width - 1
    y = (torch.arange(height, dtype=matrix.dtype, device=matrix.device) * 2 + 1) / height - 1
    m = matrix[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    grid = m[:, :, 0] * x[None, None, None, :] + (m[:, :, 1] * y[None, None, :, None] + m[:, :, 2])  # (B, 2, H, W)
    return grid.permute(0, 2, 3, 1)


def _covered(matrix: Tensor, height: int, width: int, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(start, blocks) of k-pixel blocks along rows and along columns covering every crop's
    corners with two blocks to spare (the sampling footprint), starting inside the image."""
    corners = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
                           dtype=matrix.dtype, device=matrix.device)
    points = corners @ matrix.transpose(1, 2)  # (B, 4, 2) normalised source x, y
    spans = []
    for values, extent in (((points[..., 1] + 1) * height / 2, height), ((points[..., 0] + 1) * width / 2, width)):
        low = math.floor(float(values.min()) + 1e-3)  # a whole-pixel corner may come back as 15.9999
        start = max(low - 2 * k, low % k)  # stays aligned with the crop's corner
        end = min(extent, math.ceil(float(values.max())) + 2 * k)
        spans.append((start, max(1, math.ceil((end - start) / k))))
    return spans[0], spans[1]


def _to_region(matrix: Tensor, height: int, width: int, rows: tuple[int, int], columns: tuple[int, int]) -> Tensor:
    """The maps in the normalised coordinates of a region given as (start, extent) in pixels:
    x' = x · W / extent + (W − 2·start) / extent − 1, and likewise for y."""
    local = matrix.clone()
    for row, full, (start, extent) in ((0, width, columns), (1, height, rows)):
        local[:, row] *= full / extent
        local[:, row, 2] += (full - 2 * start) / extent - 1
    return local


def jitter(images: Tensor, brightness: Tensor, contrast: Tensor, gamma: Tensor) -> Tensor:
    """Per sample: + brightness, then × contrast about each channel's mean, then ^ gamma, clamped to
    [0, 1]."""
    shape = (-1, 1, 1, 1)
    images = images + brightness.view(shape)
    mean = images.mean((2, 3), keepdim=True)
    images = (images - mean) * contrast.view(shape) + mean
    return images.clamp(0, 1).pow(gamma.view(shape))


def gaussian_blur(images: Tensor, sigma: Tensor, max_sigma: float) -> Tensor:
    """Per-sample separable Gaussian blur (sigma 0: unchanged), reflected at the borders. Each
    direction is a sum of shifted copies weighted per sample: for kernels this small that is
    several times faster on the CPU than a grouped convolution."""
    if not bool((sigma > 0).any()):
        return images
    b, _, height, width = images.shape
    radius = min(math.ceil(3 * max_sigma), height - 1, width - 1)
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    safe = sigma.clamp(min=1e-6).to(images.dtype)[:, None]
    kernel = torch.exp(-0.5 * (taps[None, :] / safe) ** 2)
    kernel = torch.where((sigma > 0)[:, None], kernel, (taps == 0).to(images.dtype)[None, :])
    weights = (kernel / kernel.sum(1, keepdim=True)).T.reshape(-1, b, 1, 1, 1)  # (taps, B, 1, 1, 1)
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = padded[..., :, 0:width] * weights[0]
    for t in range(1, 2 * radius + 1):
        rows.addcmul_(padded[..., :, t:t + width], weights[t])
    out = rows[..., 0:height, :] * weights[0]
    for t in range(1, 2 * radius + 1):
        out.addcmul_(rows[..., t:t + height, :], weights[t])
    return out
