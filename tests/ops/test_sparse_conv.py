"""sparse_conv2d on the tile layout against SparK's dense-masked reference, forward and every
gradient, over mask ratios, batch sizes, channels, odd and non-square patch grids, and the
convolutions ResNet and ConvNeXt use."""

from __future__ import annotations

import pytest
import torch
from helpers.sparse_conv_checks import check_gemm_path, conv_case

from cxrfast.nn.masking import spark_mask
from cxrfast.ops.sparse_conv import sparse_conv2d
from cxrfast.ops.sparse_conv_reference import sparse_conv2d_reference
from cxrfast.ops.sparse_tiles import TileLayout, gather_tiles, scatter_tiles


# (kernel, stride, padding, dilation, depthwise): ResNet stem, 3×3, 1×1, strided 1×1 and 3×3,
# ConvNeXt's 7×7 depthwise and 2×2 downsampling, a dilated 3×3.
CONVS = [(7, 2, 3, 1, False), (3, 1, 1, 1, False), (1, 1, 0, 1, False), (1, 2, 0, 1, False), (3, 2, 1, 1, False),
         (7, 1, 3, 1, True), (2, 2, 0, 1, False), (3, 1, 2, 2, False)]


def _both(layout, dense, weight, bias, options, tile):
    tiles = gather_tiles(dense, layout, tile)
    ours = scatter_tiles(sparse_conv2d(tiles, layout, weight, bias, **options), layout)
    return ours, sparse_conv2d_reference(dense, layout, weight, bias, **options)


@pytest.mark.parametrize("conv", CONVS, ids=lambda c: f"k{c[0]}s{c[1]}p{c[2]}d{c[3]}{'dw' if c[4] else ''}")
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
@pytest.mark.parametrize("batch,channels,grid,tile", [(1, 1, (3, 5), 8), (5, 3, (4, 3), 4), (2, 3, (7, 7), 2)])
def test_forward_and_gradients_equal_dense_masked(conv, ratio, batch, channels, grid, tile):
    layout, dense, weight, bias, options = conv_case(batch, channels, grid, tile, ratio, conv)
    params = [t.requires_grad_() for t in (dense, weight, bias)]
    ours, reference = _both(layout, dense, weight, bias, options, tile)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(reference)
    got = torch.autograd.grad(ours, params, upstream)
    # The reference's input gradient at masked positions is zero too: SparK never reads them.
    expected = torch.autograd.grad(reference, params, upstream)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("conv", [(3, 1, 1, 1, False), (7, 2, 3, 1, False), (3, 1, 3, 1, True), (7, 1, 3, 1, True)])
def test_gradcheck_float64(conv):
    layout, dense, weight, bias, options = conv_case(2, 2, (2, 3), 2 * conv[1], 0.5, conv, torch.float64)
    tiles = gather_tiles(dense, layout, dense.shape[-1] // 3).requires_grad_()
    weight.requires_grad_()
    bias.requires_grad_()
    assert torch.autograd.gradcheck(lambda t, w, b: sparse_conv2d(t, layout, w, b, **options), (tiles, weight, bias))


def test_tiles_round_trip_and_mask_token():
    layout = TileLayout.from_mask(spark_mask(3, 2, 4, 0.5, generator=torch.Generator().manual_seed(0)))
    dense = torch.randn(3, 2, 8, 16) * layout.mask(4)
    torch.testing.assert_close(scatter_tiles(gather_tiles(dense, layout, 4), layout), dense)
    token = torch.tensor([5.0, -7.0], requires_grad=True)
    filled = scatter_tiles(gather_tiles(dense, layout, 4), layout, fill=token)
    masked = layout.mask(4) == 0
    assert torch.all(filled[:, 0:1][masked] == 5.0) and torch.all(filled[:, 1:2][masked] == -7.0)
    filled.sum().backward()
    assert token.grad.tolist() == [masked.sum().item()] * 2  # every masked position feeds the token


def test_layout_rejects_bad_masks():
    with pytest.raises(ValueError, match="bool"):
        TileLayout.from_mask(torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match="does not divide"):
        layout = TileLayout.from_mask(spark_mask(1, 2, 2, 0.5, generator=torch.Generator().manual_seed(0)))
        sparse_conv2d(torch.zeros(layout.count, 1, 1, 1), layout, torch.zeros(1, 1, 3, 3), stride=2, padding=1)


@pytest.mark.parametrize("conv,tile", [(c, t) for c in CONVS if not c[4] for t in (1, 2, 4) if t % c[1] == 0],
                         ids=lambda v: f"k{v[0]}s{v[1]}p{v[2]}d{v[3]}" if isinstance(v, tuple) else f"tile{v}")
def test_gather_gemm_path_equals_reference(conv, tile):
    check_gemm_path(conv, tile, batch=3, channels=5, grid=(3, 4), ratio=0.6)


# Patches smaller than the network's stride: strided convs whose stride exceeds the tile map the
# patch grid's positions to cells of patches (ResNet's layer3/4 and ConvNeXt's downsampling at
# patch size 8 or 16), active where any of their patches is visible.
@pytest.mark.parametrize("conv", [(1, 2, 0, 1, False), (3, 2, 1, 1, False), (2, 2, 0, 1, False), (7, 4, 3, 1, False)],
                         ids=["k1s2", "k3s2p1", "k2s2", "k7s4p3"])
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
def test_convolution_leaving_the_patch_grid(conv, ratio):
    for tile in (1, 2):
        if tile < conv[1]:
            check_gemm_path(conv, tile, batch=3, channels=5, grid=(4, 8), ratio=ratio)


def test_convolution_leaving_the_patch_grid_gradcheck_float64():
    layout, dense, weight, bias, options = conv_case(2, 2, (4, 2), 1, 0.5, (3, 2, 1, 1, False), torch.float64)
    coarse = layout.coarsen(2)
    tiles = gather_tiles(dense, layout, 1).requires_grad_()
    weight.requires_grad_()
    bias.requires_grad_()
    assert torch.autograd.gradcheck(lambda t, w, b: sparse_conv2d(t, layout, w, b, **options, out_layout=coarse),
                                    (tiles, weight, bias))


def test_coarsened_layout_is_any_visible_patch():
    visible = spark_mask(2, 4, 6, 0.7, generator=torch.Generator().manual_seed(1))
    cells = TileLayout.from_mask(visible).coarsen(2)
    expected = torch.nn.functional.max_pool2d(visible[:, None].float(), 2)[:, 0] > 0
    assert torch.equal(cells.visible(), expected)
    with pytest.raises(ValueError, match="does not divide into cells"):
        TileLayout.from_mask(visible).coarsen(4)


def test_gather_gemm_gradcheck_float64():
    from cxrfast.ops.sparse_gemm import sparse_conv2d_gemm

    layout, dense, weight, bias, _ = conv_case(2, 2, (2, 3), 2, 0.5, (3, 2, 1, 1, False), torch.float64)
    tiles = gather_tiles(dense, layout, 2).requires_grad_()
    weight.requires_grad_()
    bias.requires_grad_()
    assert torch.autograd.gradcheck(lambda t, w, b: sparse_conv2d_gemm(t, layout, w, b, 2, 1, 1), (tiles, weight, bias))


@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
def test_layout_with_a_fixed_kept_count_equals_nonzero(ratio):
    visible = spark_mask(5, 4, 7, ratio, generator=torch.Generator().manual_seed(2))
    kept = int(visible[0].sum())
    fast, plain = TileLayout.from_mask(visible, kept), TileLayout.from_mask(visible)
    for a, b in zip((fast.batch, fast.row, fast.col), (plain.batch, plain.row, plain.col)):
        assert torch.equal(a, b)


def test_layout_refuses_a_wrong_kept_count():
    visible = spark_mask(2, 3, 3, 0.5, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="kept=2"):
        TileLayout.from_mask(visible, 2)


@pytest.mark.parametrize("conv", CONVS, ids=lambda c: f"k{c[0]}s{c[1]}p{c[2]}d{c[3]}{'dw' if c[4] else ''}")
@pytest.mark.parametrize("tile", [2, 8])
def test_bfloat16_tracks_the_float32_reference(conv, tile):
    layout, dense, weight, bias, options = conv_case(2, 3, (3, 4), tile, 0.6, conv, seed=5)
    params = [t.to(torch.bfloat16).requires_grad_() for t in (dense, weight, bias)]
    got = scatter_tiles(sparse_conv2d(gather_tiles(params[0], layout, tile), layout, *params[1:], **options), layout)
    assert got.dtype == torch.bfloat16
    reference = sparse_conv2d_reference(dense, layout, weight, bias, **options)
    scale = reference.abs().max()
    torch.testing.assert_close(got.float(), reference, rtol=0, atol=2e-2 * scale)
    got.float().sum().backward()
    ref_params = [t.clone().requires_grad_() for t in (dense, weight, bias)]
    sparse_conv2d_reference(*ref_params[:1], layout, *ref_params[1:], **options).sum().backward()
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p.grad.float(), q.grad, rtol=0, atol=2e-2 * q.grad.abs().max())
