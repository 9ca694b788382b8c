"""GMML's group masks (Atito et al., "SiT" and "GMML is all you need"), drawn for a whole batch
at once on the batch's device.

An image's mask is a union of rectangles drawn one after another until the union covers a target
share of the image; rectangles may overlap, so the union is what counts. Each rectangle has its
top-left corner on the `align` grid (1: any pixel; the patch size: whole patches) and a height
and width uniform over the grid's lengths from `align` to max_block · side, cut at the image's
edge. (GMML rounds a uniform pixel length to the grid instead, which can pass the limit.)

GMML draws this per image with a Python loop, summing the mask after every rectangle. Here a
batch draws a round of 62 rectangles per image at once and paints them in one call: on the CPU a
C++ kernel paints each image's rectangles in turn, counting newly covered pixels; elsewhere the
torch reference counts every prefix's union at once (each row and column holds the set of
rectangles covering it as the bits of an int64, so a pixel's first covering rectangle is the
lowest set bit of its row's set AND its column's set, and a histogram of those gives the union's
area after each rectangle). Either stops an image at the first rectangle whose union reaches its
target, as the loop would, so the two give the same masks from the same draws; an image a round
does not finish takes another.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cxrfast import _C
from cxrfast.ops.dispatch import FLOATING, Op, Support

# The C++ kernel paints each image's rectangles in turn; the reference, in torch, counts a round's
# prefixes at once on any device.
OP = Op("group_masks", {"reference": Support(frozenset({torch.bool})),
                        "cpu": Support(frozenset({torch.bool}), frozenset({"cpu"}))})
# The fill: C++ for float32 on the CPU, one pass writing every pixel; torch elsewhere.
FILL = Op("group_fill", {"reference": Support(FLOATING), "cpu": Support(frozenset({torch.float32}), frozenset({"cpu"}))})
CHUNK = 62  # rectangles per round: bit 63 is the sign and stays clear, so every lowest bit is positive


def draw_rectangles(count: tuple[int, int], height: int, width: int, max_block: float, align: int,
                    generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`count` = (images, rectangles) of them: top, left, height, width, each (images, rectangles)
    int64 on the CPU, as the definition above draws them."""

    def side(extent: int) -> tuple[Tensor, Tensor]:
        starts = torch.randint(0, extent // align, count, generator=generator) * align
        longest = max(1, int(extent * max_block) // align)  # in grid steps
        lengths = torch.randint(1, longest + 1, count, generator=generator) * align
        return starts, torch.minimum(lengths, extent - starts)  # the edge is on the grid too

    top, h = side(height)
    left, w = side(width)
    return top, left, h, w


def group_masks(shares: Tensor, height: int, width: int, *, max_block: float = 0.3, align: int = 1,
                generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Tensor:
    """(B, H, W) bool masks whose union of rectangles first reaches `shares` (B,), the target
    fraction of each image. The rectangles draw from `generator` on the CPU, a round of CHUNK per
    image at a time; the masks are painted on `device` (the C++ kernel on the CPU)."""
    return _masks_and_areas(shares, height, width, max_block, align, generator, device)[0]


def _masks_and_areas(shares: Tensor, height: int, width: int, max_block: float, align: int,
                     generator: torch.Generator | None, device) -> tuple[Tensor, Tensor]:
    """The masks and the pixels each covers."""
    if height % align or width % align:
        raise ValueError(f"a {height}×{width} image does not divide into the {align}-pixel grid")
    b = shares.shape[0]
    masks = torch.zeros(b, height * width, dtype=torch.bool, device=device)
    target = (shares.to(torch.float64) * height * width).to(masks.device)
    covered = torch.zeros(b, dtype=torch.int64, device=masks.device)
    done = torch.zeros(b, dtype=torch.bool, device=masks.device)
    paint = _paint_native if OP.select(masks.device, masks.dtype) == "cpu" else _paint
    while not done.all():
        rectangles = torch.stack(draw_rectangles((b, CHUNK), height, width, max_block, align, generator), -1)
        paint(masks, covered, target, rectangles.to(masks.device), done, height, width)
    return masks.view(b, height, width), covered


def _paint_native(masks: Tensor, covered: Tensor, target: Tensor, rectangles: Tensor, done: Tensor, height: int,
                  width: int) -> None:
    _C.group_masks(masks.view(torch.uint8).numpy(), covered.numpy(), target.numpy(), rectangles.numpy(),
                   done.view(torch.uint8).numpy(), height, width)


def _paint(masks: Tensor, covered: Tensor, target: Tensor, rectangles: Tensor, done: Tensor, height: int,
           width: int) -> None:
    """One round for the images not yet done, in place, by the lowest-set-bit count above."""
    open_ = (~done).nonzero().squeeze(1)
    top, left, h, w = rectangles[open_].unbind(-1)  # each (n, CHUNK)
    bits = torch.tensor([1 << k for k in range(CHUNK)], dtype=torch.int64, device=masks.device)
    rows, columns = torch.arange(height, device=masks.device), torch.arange(width, device=masks.device)
    in_rows = (rows >= top[..., None]) & (rows < (top + h)[..., None])  # (n, CHUNK, H)
    in_columns = (columns >= left[..., None]) & (columns < (left + w)[..., None])
    row_sets = (in_rows * bits[:, None]).sum(1)  # (n, H): the rectangles covering each row
    column_sets = (in_columns * bits[:, None]).sum(1)
    sets = (row_sets[:, :, None] & column_sets[:, None, :]).view(len(open_), -1)
    previous = masks[open_]
    sets.masked_fill_(previous, 0)  # pixels already covered add nothing
    first = torch.where(sets != 0, torch.log2((sets & -sets).double()).long(), CHUNK)  # CHUNK: not covered
    counts = torch.zeros(len(open_), CHUNK + 1, dtype=torch.int64, device=masks.device)
    counts.scatter_add_(1, first, torch.ones_like(first))
    union = covered[open_, None] + counts[:, :CHUNK].cumsum(1)  # the area after each rectangle
    reached = union >= target[open_, None]
    finished = reached.any(1)
    last = torch.where(finished, reached.int().argmax(1), CHUNK - 1)  # the rectangle that reaches it
    masks[open_] = previous | (first <= last[:, None])
    covered[open_] = union.gather(1, last[:, None]).squeeze(1)
    done[open_] = finished


def group_corruption(images: Tensor, *, share: tuple[float, float] = (0.5, 0.75), replace: float = 0.5,
                     replace_share: float = 0.3, max_block: float = 0.3, align: int = 1,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """GMML's corruption of a batch (B, C, H, W) in normalised units: each image's mask covers a
    share drawn from U(`share`) and is filled with N(0, 1) noise, or, with probability `replace`,
    covers `replace_share` and is filled with the same pixels of another image of the batch (GMML's
    code may pick the image itself, which corrupts nothing; here it never does). The corrupted
    batch and the (B, 1, H, W) bool mask."""
    b, _, height, width = images.shape
    low, high = share
    replaced = torch.rand(b, generator=generator) < replace if b > 1 else torch.zeros(b, dtype=torch.bool)
    shares = torch.where(replaced, replace_share, low + (high - low) * torch.rand(b, generator=generator))
    mask, area = _masks_and_areas(shares, height, width, max_block, align, generator, images.device)
    donors = (torch.arange(b) + torch.randint(1, max(b, 2), (b,), generator=generator)) % b  # never itself
    donors = torch.where(replaced, donors, -1).to(images.device)  # -1: noise
    # A noisy image takes as many values as its mask covers, in order; they draw on the images'
    # device from a seed of the CPU stream, so a run that saves the generator replays them.
    length = torch.where(donors < 0, area * images.shape[1], 0)
    seed = int(torch.randint(2**62, (1,), generator=generator))
    noise = torch.randn(int(length.sum()), generator=torch.Generator(images.device).manual_seed(seed),
                        device=images.device, dtype=images.dtype)
    fill = _fill_native if FILL.select(images.device, images.dtype) == "cpu" else _fill
    return fill(images, mask, donors, noise, length), mask[:, None]


def _fill_native(images: Tensor, mask: Tensor, donors: Tensor, noise: Tensor, length: Tensor) -> Tensor:
    b, c = images.shape[:2]
    images = images.detach().contiguous()  # the corruption is an input: no gradient flows through it
    corrupted = torch.empty_like(images)  # every pixel is written
    _C.group_fill(corrupted.view(b, c, -1).numpy(), images.view(b, c, -1).numpy(),
                  mask.view(torch.uint8).view(b, -1).numpy(), donors.numpy(), noise.numpy(),
                  (length.cumsum(0) - length).numpy(), length.numpy())
    return corrupted


def _fill(images: Tensor, mask: Tensor, donors: Tensor, noise: Tensor, length: Tensor) -> Tensor:
    """The same fill in torch: noise in the order of the masked pixels (image, channel, pixel),
    then the pasted images' pixels."""
    mask = mask[:, None].expand_as(images)
    corrupted = images.clone()
    corrupted[mask & (donors < 0)[:, None, None, None]] = noise
    pasted = mask & (donors >= 0)[:, None, None, None]
    return torch.where(pasted, images[donors.clamp(min=0)], corrupted)
