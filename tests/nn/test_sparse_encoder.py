"""SparseEncoder against SparK's dense-masked encoder on the same backbone: every stage's
features, every gradient, BatchNorm running statistics after several steps; and the weights are
the backbone's own."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from cxrfast.errors import ConfigError
from cxrfast.nn import DenseMaskedEncoder, SparseEncoder

sys.path.insert(0, str(Path(__file__).parents[1] / "ops"))
from backbones import STAGES, ConvNeXt, ResNet  # noqa: E402
from test_sparse_conv import random_visible  # noqa: E402


def _pair(kind, in_chans, seed=0):
    torch.manual_seed(seed)
    backbone = kind(in_chans=in_chans).double()  # float64: gradients through deep nets compared tightly
    twin = copy.deepcopy(backbone)
    return SparseEncoder(backbone, STAGES[kind]), DenseMaskedEncoder(twin, STAGES[kind])


@pytest.mark.parametrize("kind", [ResNet, ConvNeXt])
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
@pytest.mark.parametrize("batch,in_chans,grid", [(1, 1, (4, 5)), (5, 3, (2, 2)), (2, 1, (4, 3))])
def test_stages_and_gradients_equal_dense_masked(kind, ratio, batch, in_chans, grid):
    sparse, reference = _pair(kind, in_chans)
    for step in range(3):  # BatchNorm running statistics drift identically over steps
        visible = random_visible(batch, *grid, ratio, seed=step)
        assert visible.sum() >= 2  # BatchNorm over a single position is undefined (torch raises)
        images = torch.randn(batch, in_chans, grid[0] * 32, grid[1] * 32, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(step))
        ours_in, ref_in = images.clone().requires_grad_(), images.clone().requires_grad_()
        ours, expected = sparse(ours_in, visible), reference(ref_in, visible)
        assert [f.shape for f in ours] == [f.shape for f in expected]
        for a, b in zip(ours, expected):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)
        weights = [torch.randn_like(f) for f in expected]
        sum((f * w).sum() for f, w in zip(ours, weights)).backward()
        sum((f * w).sum() for f, w in zip(expected, weights)).backward()
        mask = visible.repeat_interleave(32, 1).repeat_interleave(32, 2)[:, None]
        torch.testing.assert_close(ours_in.grad * mask, ref_in.grad * mask, rtol=1e-6, atol=1e-5)
        for (name, p), q in zip(sparse.backbone.named_parameters(), reference.backbone.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-5, msg=lambda m: f"{name}: {m}")
        sparse.zero_grad()
        reference.zero_grad()
    for a, b in zip(sparse.backbone.buffers(), reference.backbone.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


def test_same_weights_and_keys_and_restore():
    backbone = ResNet()
    before = {k: v for k, v in backbone.state_dict().items()}
    weight = backbone.conv1.weight
    encoder = SparseEncoder(backbone, STAGES[ResNet])
    assert encoder.backbone.conv1.weight is weight
    assert list(backbone.state_dict()) == list(before)
    encoder(torch.randn(2, 1, 64, 96), random_visible(2, 2, 3, 0.5))
    restored = encoder.restore()
    assert type(restored.conv1) is torch.nn.Conv2d and type(restored.maxpool) is torch.nn.MaxPool2d
    restored.eval()
    restored.forward_features(torch.randn(1, 1, 64, 64))  # a plain dense network again


def test_bad_configuration_and_inputs():
    with pytest.raises(ConfigError, match="no module named"):
        SparseEncoder(ResNet(), ["layer9"])
    encoder = SparseEncoder(ResNet(), STAGES[ResNet])
    with pytest.raises(ValueError, match="do not match patch size"):
        encoder(torch.randn(1, 1, 64, 64), torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="do not match patch size"):
        encoder(torch.randn(1, 1, 60, 64), torch.ones(1, 1, 2, dtype=torch.bool))


def test_fixed_kept_count_gives_the_same_features():
    torch.manual_seed(0)
    backbone = ConvNeXt()
    twin = copy.deepcopy(backbone)
    visible = random_visible(3, 2, 3, 0.5)
    plain = SparseEncoder(backbone, STAGES[ConvNeXt])(torch.ones(3, 1, 64, 96), visible)
    fixed = SparseEncoder(twin, STAGES[ConvNeXt], kept=3)(torch.ones(3, 1, 64, 96), visible)
    for a, b in zip(plain, fixed):
        torch.testing.assert_close(a, b)
