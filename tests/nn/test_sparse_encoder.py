"""SparseEncoder against SparK's dense-masked encoder on the same backbone: every stage's
features, every gradient, BatchNorm running statistics after several steps; and the weights are
the backbone's own."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.backbones import STAGES, ConvNeXt, ResNet

from cxrfast.errors import ConfigError
from cxrfast.models import import_timm
from cxrfast.nn import DenseMaskedEncoder, SparseEncoder
from cxrfast.nn.masking import spark_mask


def _timm(name):
    def make(in_chans):
        return import_timm().create_model(name, in_chans=in_chans)
    return make


# name -> (build(in_chans), encoder options). The fixtures have timm's layer structure at small
# widths (fast enough for the whole grid); the timm models are the real ones, at their full widths.
BACKBONES = {
    "resnet-like": (lambda in_chans: ResNet(in_chans=in_chans), {"patch_size": 32, "stages": STAGES[ResNet]}),
    "convnext-like": (lambda in_chans: ConvNeXt(in_chans=in_chans), {"patch_size": 32, "stages": STAGES[ConvNeXt]}),
    **{name: (_timm(name), {}) for name in ["resnet18", "resnet50", "convnext_tiny"]},
}


def _pair(name, in_chans, patch_size=None, seed=0):
    make, options = BACKBONES[name]
    if patch_size is not None:
        options = {**options, "patch_size": patch_size}
    torch.manual_seed(seed)
    backbone = make(in_chans).double()  # float64: gradients through deep nets compared tightly
    twin = copy.deepcopy(backbone)
    return SparseEncoder(backbone, **options), DenseMaskedEncoder(twin, **options)


def check_against_dense_masked(name, ratio, batch, in_chans, grid, steps=3, patch_size=None):
    sparse, reference = _pair(name, in_chans, patch_size)
    patch = sparse.patch_size
    for step in range(steps):  # BatchNorm running statistics drift identically over steps
        visible = spark_mask(batch, *grid, ratio, generator=torch.Generator().manual_seed(step))
        assert visible.sum() >= 2  # BatchNorm over a single position is undefined (torch raises)
        images = torch.randn(batch, in_chans, grid[0] * patch, grid[1] * patch, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(step))
        ours_in, ref_in = images.clone().requires_grad_(), images.clone().requires_grad_()
        ours, expected = sparse(ours_in, visible), reference(ref_in, visible)
        assert [f.shape for f in ours] == [f.shape for f in expected]
        for a, b in zip(ours, expected):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)
        weights = [torch.randn_like(f) for f in expected]
        sum((f * w).sum() for f, w in zip(ours, weights)).backward()
        sum((f * w).sum() for f, w in zip(expected, weights)).backward()
        mask = visible.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, None]
        torch.testing.assert_close(ours_in.grad * mask, ref_in.grad * mask, rtol=1e-6, atol=1e-5)
        for (param, p), q in zip(sparse.backbone.named_parameters(), reference.backbone.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-5, msg=lambda m: f"{param}: {m}")
        sparse.zero_grad()
        reference.zero_grad()
    for a, b in zip(sparse.backbone.buffers(), reference.backbone.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", ["resnet-like", "convnext-like"])
@pytest.mark.parametrize("ratio", [0.0, 0.6, 0.9])
@pytest.mark.parametrize("batch,in_chans,grid", [(1, 1, (4, 5)), (5, 3, (2, 2)), (2, 1, (4, 3))])
def test_stages_and_gradients_equal_dense_masked(name, ratio, batch, in_chans, grid):
    check_against_dense_masked(name, ratio, batch, in_chans, grid)


# ResNet-50's bottlenecks get one case; ConvNeXt-S only repeats ConvNeXt-T's blocks (27 in stage 3,
# not 9), so it adds half a minute and nothing new.
@pytest.mark.parametrize("name,ratio,batch,in_chans,grid", [
    *[(name, 0.6, 2, 1, (2, 3)) for name in ["resnet18", "resnet50", "convnext_tiny"]],
    *[(name, 0.9, 5, 3, (3, 2)) for name in ["resnet18", "convnext_tiny"]],
])
def test_timm_encoders_equal_dense_masked(name, ratio, batch, in_chans, grid):
    check_against_dense_masked(name, ratio, batch, in_chans, grid, steps=2)


# Patches smaller than the network's stride: the deeper stages run on cells of patches.
@pytest.mark.parametrize("name", ["resnet-like", "convnext-like", "resnet18", "convnext_tiny"])
@pytest.mark.parametrize("patch_size,ratio,batch,in_chans,image", [(16, 0.6, 2, 1, (64, 96)), (8, 0.75, 3, 3, (96, 64))])
def test_small_patches_equal_dense_masked(name, patch_size, ratio, batch, in_chans, image):
    grid = (image[0] // patch_size, image[1] // patch_size)
    check_against_dense_masked(name, ratio, batch, in_chans, grid, steps=2, patch_size=patch_size)


@pytest.mark.parametrize("name", ["resnet-like", "convnext-like"])
def test_autocast_bfloat16_as_accurate_as_dense_masked(name):
    """Mixed precision (float32 weights, bf16 compute): against the float64 truth, the sparse
    encoder's features and float32 gradients are as accurate as SparK's dense-masked encoder's
    under the same autocast."""
    make, options = BACKBONES[name]
    torch.manual_seed(0)
    backbone = make(1)
    twin, truth = copy.deepcopy(backbone), copy.deepcopy(backbone).double()
    encoders = [SparseEncoder(backbone, **options), DenseMaskedEncoder(twin, **options),
                DenseMaskedEncoder(truth, **options)]
    visible = spark_mask(2, 2, 3, 0.6, generator=torch.Generator().manual_seed(0))
    images = torch.randn(2, 1, 64, 96)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, baseline = encoders[0](images, visible), encoders[1](images, visible)
    exact = encoders[2](images.double(), visible)
    weights = [torch.randn(f.shape, dtype=torch.float64) for f in exact]
    for features in (ours, baseline, exact):
        sum((f.double() * w).sum() for f, w in zip(features, weights)).backward()

    def error(a, b):
        return (a.double() - b).norm().item()

    for a, b, c in zip(ours, baseline, exact):
        assert a.dtype == b.dtype  # bf16 after a convolution, float32 after ConvNeXt's float32 residual
        assert error(a, c) <= 1.5 * error(b, c) + 1e-3 * c.norm().item()
    for (param, p), q, r in zip(backbone.named_parameters(), twin.parameters(), truth.parameters()):
        assert p.grad.dtype == torch.float32
        assert error(p.grad, r.grad) <= 1.5 * error(q.grad, r.grad) + 1e-3 * r.grad.norm().item(), param


def test_timm_defaults_are_sparks_scales():
    encoder = SparseEncoder(import_timm().create_model("resnet50", in_chans=1))
    assert encoder.stages == ["layer1", "layer2", "layer3", "layer4"] and encoder.patch_size == 32
    visible = spark_mask(2, 2, 3, 0.5, generator=torch.Generator().manual_seed(0))
    features = encoder(torch.randn(2, 1, 64, 96), visible)
    assert [tuple(f.shape) for f in features] == [(2, 256, 16, 24), (2, 512, 8, 12), (2, 1024, 4, 6), (2, 2048, 2, 3)]


def test_same_weights_and_keys_and_restore():
    backbone = ResNet()
    before = {k: v for k, v in backbone.state_dict().items()}
    weight = backbone.conv1.weight
    encoder = SparseEncoder(backbone, 32, stages=STAGES[ResNet])
    assert encoder.backbone.conv1.weight is weight
    assert list(backbone.state_dict()) == list(before)
    encoder(torch.randn(2, 1, 64, 96), spark_mask(2, 2, 3, 0.5, generator=torch.Generator().manual_seed(0)))
    restored = encoder.restore()
    assert type(restored.conv1) is torch.nn.Conv2d and type(restored.maxpool) is torch.nn.MaxPool2d
    restored.eval()
    restored.forward_features(torch.randn(1, 1, 64, 64))  # a plain dense network again


def test_bad_configuration_and_inputs():
    with pytest.raises(ConfigError, match="no module named"):
        SparseEncoder(ResNet(), 32, stages=["layer9"])
    with pytest.raises(ConfigError, match="no Conv2d"):
        SparseEncoder(torch.nn.Sequential(torch.nn.Linear(3, 3)), 32, stages=["0"])
    encoder = SparseEncoder(ResNet(), stages=STAGES[ResNet])
    assert encoder.patch_size == 32  # the deepest stage's stride, probed
    with pytest.raises(ValueError, match="do not match patch size"):
        encoder(torch.randn(1, 1, 64, 64), torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiples of 32"):
        encoder(torch.randn(1, 1, 60, 64), torch.ones(1, 1, 2, dtype=torch.bool))
    small = SparseEncoder(ResNet(), 8, stages=STAGES[ResNet])
    with pytest.raises(ValueError, match="multiples of 32"):  # whole patches, but not whole cells at stride 32
        small(torch.randn(1, 1, 48, 64), torch.ones(1, 6, 8, dtype=torch.bool))


def test_fixed_kept_count_gives_the_same_features():
    torch.manual_seed(0)
    backbone = ConvNeXt()
    twin = copy.deepcopy(backbone)
    visible = spark_mask(3, 2, 3, 0.5, generator=torch.Generator().manual_seed(0))
    plain = SparseEncoder(backbone, 32, stages=STAGES[ConvNeXt])(torch.ones(3, 1, 64, 96), visible)
    fixed = SparseEncoder(twin, 32, stages=STAGES[ConvNeXt], kept=3)(torch.ones(3, 1, 64, 96), visible)
    for a, b in zip(plain, fixed):
        torch.testing.assert_close(a, b)
