"""Pooling and normalisation on the tile layout against SparK's dense-masked forms: BatchNorm
statistics (and running statistics) over visible positions only, ConvNeXt's channels-first
LayerNorm per position, max/avg pooling of the zero-filled map."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cxrfast.nn.masking import spark_mask
from cxrfast.ops.sparse_pool import sparse_avg_pool2d, sparse_max_pool2d
from cxrfast.ops.sparse_tiles import TileLayout, gather_tiles, scatter_tiles


def _dense(batch, channels, grid, tile, ratio, seed=0):
    layout = TileLayout.from_mask(spark_mask(batch, *grid, ratio, generator=torch.Generator().manual_seed(seed)))
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(batch, channels, grid[0] * tile, grid[1] * tile, generator=g) * 3 + 1
    return layout, dense * layout.mask(tile)


class SparkBatchNorm(torch.nn.BatchNorm1d):
    """SparK's formulation: BatchNorm1d over the visible positions, gathered with the mask."""

    def forward_masked(self, dense: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = dense.permute(0, 2, 3, 1)[mask[:, 0] > 0]
        out = torch.zeros_like(dense.permute(0, 2, 3, 1))
        out[mask[:, 0] > 0] = super().forward(positions)
        return out.permute(0, 3, 1, 2)


@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
@pytest.mark.parametrize("batch,channels,grid,tile", [(1, 3, (3, 5), 4), (5, 8, (4, 4), 2), (2, 1, (7, 7), 1)])
def test_batch_norm_uses_visible_positions_only(ratio, batch, channels, grid, tile):
    ours, spark = torch.nn.BatchNorm2d(channels, momentum=0.3), SparkBatchNorm(channels, momentum=0.3)
    with torch.no_grad():
        for bn in (ours, spark):
            bn.weight.copy_(torch.linspace(0.5, 2.0, channels))
            bn.bias.copy_(torch.linspace(-1.0, 1.0, channels))
    for step in range(4):  # running statistics after several training steps
        layout, dense = _dense(batch, channels, grid, tile, ratio, seed=step)
        dense.requires_grad_()
        got = scatter_tiles(ours(gather_tiles(dense, layout, tile)), layout)
        expected = spark.forward_masked(dense, layout.mask(tile))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        upstream = torch.randn_like(got)
        grads = torch.autograd.grad(got, [dense, ours.weight, ours.bias], upstream)
        reference = torch.autograd.grad(expected, [dense, spark.weight, spark.bias], upstream)
        for a, b in zip(grads, reference):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.running_mean, spark.running_mean)
    torch.testing.assert_close(ours.running_var, spark.running_var)
    ours.eval(), spark.eval()
    layout, dense = _dense(batch, channels, grid, tile, ratio, seed=9)
    torch.testing.assert_close(scatter_tiles(ours(gather_tiles(dense, layout, tile)), layout),
                               spark.forward_masked(dense, layout.mask(tile)))


def test_channels_first_layer_norm_per_position():
    layout, dense = _dense(3, 6, (3, 4), 4, 0.6)
    weight, bias = torch.rand(6), torch.rand(6)

    def layer_norm(x):  # ConvNeXt's channels-first LayerNorm
        return F.layer_norm(x.permute(0, 2, 3, 1), (6,), weight, bias, 1e-6).permute(0, 3, 1, 2)

    got = scatter_tiles(layer_norm(gather_tiles(dense, layout, 4)), layout)
    torch.testing.assert_close(got, layer_norm(dense) * layout.mask(4))


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
def test_pooling_equals_dense_pooling_of_zero_filled_map(kernel, stride, padding, ratio):
    layout, dense = _dense(4, 3, (3, 5), 8, ratio)
    dense = dense - 5.0  # negative values: max pooling must see masked zeros, not just visible values
    dense.requires_grad_()
    for sparse, dense_pool in ((sparse_max_pool2d, F.max_pool2d), (sparse_avg_pool2d, F.avg_pool2d)):
        reference = dense_pool(dense * layout.mask(8), kernel, stride, padding) * layout.mask(8 // stride)
        got = scatter_tiles(sparse(gather_tiles(dense, layout, 8), layout, kernel, stride, padding), layout)
        torch.testing.assert_close(got, reference)
        upstream = torch.randn_like(got)
        torch.testing.assert_close(torch.autograd.grad(got, dense, upstream)[0],
                                   torch.autograd.grad(reference, dense, upstream)[0])


def test_avg_pool_without_pad_counting_is_refused():
    layout, dense = _dense(1, 1, (2, 2), 4, 0.5)
    with pytest.raises(ValueError, match="count_include_pad"):
        sparse_avg_pool2d(gather_tiles(dense, layout, 4), layout, 3, 1, 1, count_include_pad=False)
