"""GMML's group masks and corruption against their definition: the C++ and torch backends paint
the same masks, each mask is the sequential union of its rectangles up to the target, the shares
and rectangle sizes stay in GMML's bounds, replaced pixels come from another image, and the
batched corruption has the distribution of the per-image loop (`group_corruption_reference`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from cxrfast import _C
from cxrfast.ops.dispatch import record_backends
from cxrfast.nn.group_masking import CHUNK, draw_rectangles, group_corruption, group_masks
from cxrfast.nn.group_masking_reference import group_corruption_reference


def _masks(shares, height, width, seed, backend, monkeypatch, **options):
    monkeypatch.setenv("CXRFAST_BACKEND", backend)
    with record_backends() as chosen:
        masks = group_masks(shares, height, width, generator=torch.Generator().manual_seed(seed), **options)
    assert chosen == [("group_masks", backend)]
    return masks


@pytest.mark.parametrize("height, width, align", [(224, 224, 1), (224, 224, 16), (64, 96, 1), (48, 80, 16)])
def test_backends_paint_the_same_masks(height, width, align, monkeypatch):
    shares = torch.rand(24, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.3
    native = _masks(shares, height, width, 7, "cpu", monkeypatch, align=align)
    reference = _masks(shares, height, width, 7, "reference", monkeypatch, align=align)
    assert native.shape == (24, height, width) and native.dtype == torch.bool
    assert torch.equal(native, reference)


@pytest.mark.parametrize("channels", [1, 3])
def test_backends_corrupt_alike(channels, monkeypatch):
    """The C++ fill and torch's give the same batch from the same draws: the noise in the order
    of the masked pixels, the pasted pixels from the same donors."""
    images = torch.randn(16, channels, 40, 56, generator=torch.Generator().manual_seed(1))
    out = {}
    for backend in ("cpu", "reference"):
        monkeypatch.setenv("CXRFAST_BACKEND", backend)
        with record_backends() as chosen:
            out[backend] = group_corruption(images, generator=torch.Generator().manual_seed(4))
        assert chosen == [("group_masks", backend), ("group_fill", backend)]
    (a, mask_a), (b, mask_b) = out["cpu"], out["reference"]
    assert torch.equal(mask_a, mask_b) and torch.equal(a, b)
    assert mask_a.shape == (16, 1, 40, 56) and not torch.equal(a, images)


def test_a_mask_is_the_union_of_its_rectangles_up_to_the_first_that_reaches_the_target(monkeypatch):
    """Brute force: paint the same draws one rectangle at a time, as GMML's loop does."""
    height, width, shares = 40, 56, torch.tensor([0.05, 0.5, 0.75, 0.9, 0.99])
    masks = _masks(shares, height, width, 11, "cpu", monkeypatch, max_block=0.2)
    generator = torch.Generator().manual_seed(11)
    expected = np.zeros((len(shares), height, width), bool)
    done = np.zeros(len(shares), bool)
    while not done.all():
        top, left, h, w = (t.numpy() for t in draw_rectangles((len(shares), CHUNK), height, width, 0.2, 1, generator))
        for i in np.flatnonzero(~done):
            for k in range(CHUNK):
                expected[i, top[i, k]:top[i, k] + h[i, k], left[i, k]:left[i, k] + w[i, k]] = True
                if expected[i].sum() >= float(shares[i]) * height * width:
                    done[i] = True
                    break
    np.testing.assert_array_equal(masks.numpy(), expected)


@pytest.mark.parametrize("align", [1, 8])
def test_rectangles_respect_the_size_limit_and_the_grid(align):
    top, left, h, w = draw_rectangles((200, 62), 64, 96, 0.3, align, torch.Generator().manual_seed(0))
    for start, length, side in ((top, h, 64), (left, w, 96)):
        assert (length >= align).all() and (length <= max(align, int(0.3 * side) // align * align)).all()
        assert (start % align == 0).all() and (length % align == 0).all()
        assert (start >= 0).all() and (start + length <= side).all()
    # The sizes are spread over the whole range, not stuck at one value.
    assert int(h.min()) == align and int(h.max()) > 0.8 * 0.3 * 64


def test_shares_stay_in_gmmls_bounds():
    """Noise masks cover U(0.5, 0.75), replaced ones 0.3, each overshooting by less than one
    rectangle; about half the images are replaced."""
    size, largest = 64, int(0.3 * 64) ** 2 / 64**2
    images = torch.randn(400, 1, size, size)
    corrupted, masks = group_corruption(images, generator=torch.Generator().manual_seed(5))
    share = masks.float().mean((1, 2, 3))
    noise = (corrupted != images).any(3).any(2).any(1) & (share > 0.45)  # replaced masks hold ≤ 0.39
    replaced = ~noise
    assert 0.42 < replaced.float().mean() < 0.58
    assert (share[noise] >= 0.5).all() and (share[noise] < 0.75 + largest).all()
    assert (share[replaced] >= 0.3).all() and (share[replaced] < 0.3 + largest).all()
    assert share[noise].min() < 0.53 and share[noise].max() > 0.73  # the whole range is drawn


def test_replaced_pixels_come_from_another_image_and_noise_is_standard_normal():
    b, size = 64, 48
    images = torch.arange(b, dtype=torch.float32)[:, None, None, None].expand(b, 1, size, size).contiguous()
    corrupted, masks = group_corruption(images, generator=torch.Generator().manual_seed(2))
    assert torch.equal(corrupted[~masks], images[~masks])  # nothing outside the mask changes
    noise = []
    for i in range(b):
        inside = corrupted[i][masks[i]]
        values = inside.unique()
        if len(values) == 1:  # pasted from one other image, all at the same place
            assert float(values) != i and float(values) == int(values)
        else:
            noise.append(inside)
    assert 15 < len(noise) < 49
    noise = torch.cat(noise)
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 1) < 0.01


def test_the_batched_corruption_has_the_per_image_loops_distribution():
    size, count = 48, 300
    images = torch.arange(count, dtype=torch.float32)[:, None, None, None].expand(count, 1, size, size).contiguous()
    drawn = {}
    for name, corruption in (("batched", group_corruption), ("loop", group_corruption_reference)):
        corrupted, masks = corruption(images, generator=torch.Generator().manual_seed(9))
        replaced = torch.tensor([len(corrupted[i][masks[i]].unique()) == 1 for i in range(count)])
        drawn[name] = masks[:, 0].float(), masks.float().mean((1, 2, 3)), replaced
    (mask_a, share_a, replaced_a), (mask_b, share_b, replaced_b) = drawn["batched"], drawn["loop"]
    assert abs(float(replaced_a.float().mean() - replaced_b.float().mean())) < 0.12
    for a, b in ((share_a[~replaced_a], share_b[~replaced_b]), (share_a[replaced_a], share_b[replaced_b])):
        assert stats.ks_2samp(a.numpy(), b.numpy()).pvalue > 0.01
    # Where the masks fall: the pixel coverage maps agree (both are denser at the centre, since
    # rectangles are cut at the edges).
    coverage_a, coverage_b = mask_a.mean(0), mask_b.mean(0)
    assert float((coverage_a - coverage_b).abs().mean()) < 0.04
    assert float(coverage_a[20:28, 20:28].mean()) > float(coverage_a[:, 0].mean())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="16-pixel grid"):
        group_masks(torch.tensor([0.5]), 40, 40, align=16)
    masks, covered = np.zeros(16, np.uint8), np.zeros(1, np.int64)
    target, done = np.array([8.0]), np.zeros(1, np.uint8)
    with pytest.raises(ValueError, match="leaves the 4x4 image"):
        _C.group_masks(masks, covered, target, np.array([[[2, 0, 3, 1]]], np.int64), done, 4, 4)
    with pytest.raises(ValueError, match="masks holds 16 values, 25 expected"):
        _C.group_masks(masks, covered, target, np.array([[[0, 0, 1, 1]]], np.int64), done, 5, 5)
    with pytest.raises(ValueError, match="rectangles must be"):
        _C.group_masks(masks, covered, target, np.zeros((1, 4), np.int64), done, 4, 4)
    images, out, mask = np.zeros((2, 1, 4), np.float32), np.zeros((2, 1, 4), np.float32), np.ones(8, np.uint8)
    one = np.array([0, 0], np.int64)
    with pytest.raises(ValueError, match="donor 2 is not an image"):
        _C.group_fill(out, images, mask, np.array([2, -1]), np.zeros(4, np.float32), one, np.array([0, 4]))
    with pytest.raises(ValueError, match="noise leaves the noise buffer"):
        _C.group_fill(out, images, mask, np.array([1, -1]), np.zeros(3, np.float32), one, np.array([0, 4]))
    with pytest.raises(ValueError, match="needs more noise than given"):
        _C.group_fill(out, images, mask, np.array([1, -1]), np.zeros(4, np.float32), one, np.array([0, 2]))
