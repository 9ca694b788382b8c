"""Radiograph augmentations against independent references: torch's interpolate, rot90 and flip
for the geometry, hand formulas for the intensity, an explicit 2D Gaussian convolution for the
blur, and the sampled crop statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cxrfast.data.augment import ViewAugment, crop_boxes, gaussian_blur, jitter, resample, resize_center

IDENTITY = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), rotation=0.0, brightness=0.0, contrast=0.0, gamma=0.0, blur=0.0)


def _images(b=3, h=64, w=64, seed=0):
    return torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(seed))


def _resample(images, box, angle=0.0, flip=False, size=None):
    b = images.shape[0]
    boxes = torch.tensor([box], dtype=torch.float32).repeat(b, 1)
    return resample(images, boxes, torch.full((b,), angle), torch.full((b,), flip), size or tuple(images.shape[2:]))


def test_identity_parameters_return_the_input():
    images = _images()
    got = ViewAugment(size=64, **IDENTITY)(images, torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("box,size", [((8, 16, 32, 32), (32, 32)), ((0, 0, 64, 32), (32, 16)), ((4, 4, 48, 40), (24, 20))])
def test_crops_equal_interpolating_the_region(box, size):
    images = _images(h=64, w=64)
    top, left, h, w = box
    region = images[..., top:top + h, left:left + w]
    factor = min(h // size[0], w // size[1])
    # The reference: area-average by the whole factor, then bilinear to the size (align_corners=False).
    expected = F.interpolate(F.avg_pool2d(region, factor) if factor > 1 else region, size=size, mode="bilinear",
                             align_corners=False)
    torch.testing.assert_close(_resample(images, box, size=size), expected, atol=1e-5, rtol=0)


def test_the_evaluation_view_is_the_area_resized_centre_crop():
    images = _images(b=2, h=96, w=64)
    # The centred 64 × 64 square, shrunk by exactly 2: a 2 × 2 block mean.
    expected = F.avg_pool2d(images[..., 16:80, :], 2)
    torch.testing.assert_close(resize_center(images, 32), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(resize_center(images, (48, 32)), F.avg_pool2d(images, 2), atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_is_rot90_and_flip_is_flip():
    images = _images(h=32, w=32)
    # Positive angles turn the content counter-clockwise on screen, as torch.rot90 with k = 1 does.
    torch.testing.assert_close(_resample(images, (0, 0, 32, 32), angle=90.0), torch.rot90(images, 1, (2, 3)),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(_resample(images, (0, 0, 32, 32), flip=True), torch.flip(images, [-1]), atol=1e-5,
                               rtol=0)


def test_the_default_never_flips():
    images = torch.zeros(64, 1, 64, 64)
    images[..., :, :32] = 1.0  # bright on the image's left
    views = ViewAugment(size=32, scale=(0.9, 1.0), rotation=0.0, brightness=0, contrast=0, gamma=0, blur=0)(
        images, torch.Generator().manual_seed(0))
    assert bool((views[..., :, :8].mean((1, 2, 3)) > views[..., :, -8:].mean((1, 2, 3))).all())
    flipped = ViewAugment(size=32, scale=(0.9, 1.0), rotation=0.0, hflip=1.0, brightness=0, contrast=0, gamma=0,
                          blur=0)(images, torch.Generator().manual_seed(0))
    assert bool((flipped[..., :, :8].mean((1, 2, 3)) < flipped[..., :, -8:].mean((1, 2, 3))).all())


def test_crop_statistics():
    boxes = crop_boxes(4000, 300, 200, (0.2, 0.8), (0.75, 1.3333), torch.Generator().manual_seed(3))
    top, left, h, w = boxes.unbind(1)
    area, aspect = h * w / (300 * 200), w / h
    assert bool(((area >= 0.2 - 1e-6) & (area <= 0.8 + 1e-6)).all())
    assert bool(((aspect >= 0.75 - 1e-5) & (aspect <= 1.3334)).all())
    assert bool(((top >= 0) & (left >= 0) & (top + h <= 300 + 1e-4) & (left + w <= 200 + 1e-4)).all())
    # Where every draw fits (square crops of a square image) the area is uniform in the range.
    square = crop_boxes(4000, 100, 100, (0.2, 0.8), (1.0, 1.0), torch.Generator().manual_seed(4))
    assert abs(float((square[:, 2] * square[:, 3]).mean()) / 100**2 - 0.5) < 0.01
    # Nothing fits (crops wider than the image): the centre crop of the closest aspect.
    fallback = crop_boxes(5, 100, 10, (1.0, 1.0), (2.0, 3.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(fallback[0], torch.tensor([47.5, 0.0, 5.0, 10.0]))


def test_intensity_against_hand_formulas():
    ramp = torch.linspace(0, 1, 16).view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    got = jitter(ramp, torch.tensor([0.1, -0.2]), torch.tensor([1.5, 0.5]), torch.tensor([2.0, 0.5]))
    for i, (b, c, g) in enumerate([(0.1, 1.5, 2.0), (-0.2, 0.5, 0.5)]):
        shifted = ramp[i] + b
        expected = ((shifted - shifted.mean()) * c + shifted.mean()).clamp(0, 1) ** g
        torch.testing.assert_close(got[i], expected)
    assert float(got.min()) >= 0 and float(got.max()) <= 1


def test_blur_equals_an_explicit_gaussian_convolution():
    images = _images(b=2, h=40, w=40)
    sigma = torch.tensor([1.3, 0.0])
    got = gaussian_blur(images, sigma, 2.0)
    radius = math.ceil(3 * 2.0)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g2 = torch.exp(-(taps[:, None] ** 2 + taps[None, :] ** 2) / (2 * 1.3**2))
    padded = F.pad(images[:1], (radius,) * 4, mode="reflect")
    torch.testing.assert_close(got[:1], F.conv2d(padded, (g2 / g2.sum())[None, None]), atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], images[1])  # sigma 0: untouched


def test_reproducible_and_views_differ():
    images, augment = _images(), ViewAugment(size=32)
    first = augment.views(images, 2, torch.Generator().manual_seed(7))
    again = augment.views(images, 2, torch.Generator().manual_seed(7))
    other = augment.views(images, 2, torch.Generator().manual_seed(8))
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first[0], first[1]) and not torch.allclose(first[0], other[0])


def test_shrinking_does_not_alias():
    # A one-pixel checkerboard shrunk 8.5×: its area mean is 0.5 everywhere; bilinear sampling alone
    # lands between pixels at varying fractions and keeps a moiré.
    board = ((torch.arange(512)[:, None] + torch.arange(512)[None, :]) % 2).float().view(1, 1, 512, 512)
    ours = _resample(board, (0, 0, 512, 512), size=(60, 60))
    naive = F.grid_sample(board, F.affine_grid(torch.eye(2, 3)[None], [1, 1, 60, 60], align_corners=False),
                          align_corners=False)
    assert float(ours.std()) < 0.01 < float(naive.std())


def test_bad_inputs():
    with pytest.raises(ValueError, match="scale"):
        ViewAugment(scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="hflip"):
        ViewAugment(hflip=1.5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ViewAugment()(torch.rand(2, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ViewAugment()(torch.ones(2, 1, 8, 8, dtype=torch.uint8), torch.Generator())


def test_a_slices_windows_move_and_change_together():
    """Channels (a CT slice's windows) share every draw: each channel of a 3-channel view is the
    view of that channel alone under the same generator, crops, turns, flips, jitter and blur."""
    images = torch.rand(4, 3, 40, 48)
    augment = ViewAugment(size=(24, 24), hflip=0.5, rotation=20.0, blur=0.7)
    together = augment(images, torch.Generator().manual_seed(3))
    for c in range(3):
        alone = augment(images[:, c:c + 1], torch.Generator().manual_seed(3))
        torch.testing.assert_close(together[:, c:c + 1], alone, atol=1e-6, rtol=1e-6)


def test_masks_move_with_their_images():
    """A binary image is its own mask: the image's view (bilinear) thresholded at ½ is the mask's
    view (nearest) but for pixels on the edges, for crops, turns and flips alike; the mask view
    stays 0 or 1, and the intensity changes touch the image only."""
    from cxrfast.data.augment import resize_center

    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    shapes = ((yy - 30) ** 2 / 400 + (xx - 35) ** 2 / 150 < 1) | ((yy > 55) & (yy < 85) & (xx > 50) & (xx < 70))
    masks = shapes.float()[None, None].repeat(4, 1, 1, 1)
    augment = ViewAugment(size=(64, 64), scale=(0.5, 1.0), rotation=15.0, hflip=0.5, brightness=0.0, contrast=0.0,
                          gamma=0.0, blur=0.0)
    views, moved = augment.with_masks(masks, masks, torch.Generator().manual_seed(0))
    assert set(moved.unique().tolist()) <= {0.0, 1.0}
    agree = ((views > 0.5) == (moved > 0.5)).float().mean()
    assert agree > 0.97, agree
    alone = augment(masks, torch.Generator().manual_seed(0))
    torch.testing.assert_close(alone, views)  # the same draws with or without masks
    centred = resize_center(masks, 64, nearest=True)
    assert set(centred.unique().tolist()) <= {0.0, 1.0}
    assert ((resize_center(masks, 64) > 0.5) == (centred > 0.5)).float().mean() > 0.97
    jittered, kept = ViewAugment(size=(64, 64), brightness=0.5).with_masks(masks * 0.5, masks,
                                                                          torch.Generator().manual_seed(1))
    assert set(kept.unique().tolist()) <= {0.0, 1.0} and not torch.equal(jittered > 0.25, kept > 0.5)
    with pytest.raises(ValueError, match="must be one channel of the images'"):
        augment.with_masks(masks, masks[:2], torch.Generator())
