"""SparK, SimCLR and MoCo v2 against independent references: SparK's loss against unfold-based
patches, its sparse run against its dense-masked run, the contrastive steps against the naive
losses on the same embeddings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.losses.reference import naive_moco, naive_nt_xent
from cxrfast.methods import MoCo, SimCLR, SparK, create_method
from cxrfast.methods.spark import masked_patch_loss
from cxrfast.models import create_backbone
from cxrfast.nn.masking import spark_mask


def test_spark_mask_keeps_the_same_count_per_sample():
    visible = spark_mask(6, 7, 5, 0.6, generator=torch.Generator().manual_seed(0))
    assert visible.shape == (6, 7, 5)
    assert visible.flatten(1).sum(1).tolist() == [round(35 * 0.4)] * 6
    assert not torch.equal(visible[0], visible[1])


def test_masked_patch_loss_against_unfold():
    torch.manual_seed(0)
    images, reconstruction = torch.rand(3, 1, 24, 16), torch.randn(3, 1, 24, 16)
    visible = spark_mask(3, 3, 2, 0.5)
    patches = F.unfold(images, 8, stride=8).transpose(1, 2)  # (B, L, 64), row-major patches
    target = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
    error = (F.unfold(reconstruction, 8, stride=8).transpose(1, 2) - target).pow(2).mean(-1)
    masked = ~visible.flatten(1)
    expected = error[masked].mean()
    torch.testing.assert_close(masked_patch_loss(reconstruction, images, visible, 8), expected)
    # Visible patches do not count.
    changed = reconstruction + visible.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, None] * 5.0
    torch.testing.assert_close(masked_patch_loss(changed, images, visible, 8), expected)


@pytest.mark.parametrize("backbone", ["resnet18", "convnext_atto"])
def test_spark_sparse_equals_dense_masked(backbone):
    """The same step through the sparse encoder and through SparK's dense simulation: loss and
    every gradient (encoder, tokens, decoder) agree. In float64: at initialisation ConvNeXt's
    layer norms see near-constant inputs and amplify float32 rounding to ~1e-3 of a gradient."""
    torch.manual_seed(0)
    sparse = SparK(create_backbone(backbone), image_size=(64, 96), decoder_width=64).double()
    dense = SparK(create_backbone(backbone), image_size=(64, 96), decoder_width=64, sparse=False).double()
    dense.load_state_dict(sparse.state_dict())
    images = torch.rand(3, 1, 64, 96, dtype=torch.float64)
    visible = spark_mask(3, 2, 3, 0.6, generator=torch.Generator().manual_seed(1))
    losses = []
    for model in (sparse, dense):
        reconstruction = model.reconstruct(images, visible)
        loss = masked_patch_loss(reconstruction, images, visible, model.patch_size)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-12)
    for (name, a), (_, b) in zip(sparse.named_parameters(), dense.named_parameters()):
        if b.grad is None:  # timm's classifier-free head norm: unused by both
            assert a.grad is None, name
            continue
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_spark_step_and_backbone_copy():
    torch.manual_seed(0)
    model = SparK(create_backbone("resnet18"), image_size=64, decoder_width=64)
    images = torch.rand(2, 1, 64, 64)
    drawn = model.generator.get_state()
    loss = model.training_step(Batch([images]))
    loss.backward()
    assert model.mask_tokens[0].grad is not None
    model.generator.set_state(drawn)  # the step's mask, drawn again from the method's own generator
    visible = model.mask(2, "cpu")
    assert visible.flatten(1).sum(1).tolist() == [round(4 * 0.4)] * 2
    torch.testing.assert_close(loss, masked_patch_loss(model.reconstruct(images, visible), images, visible, 32))
    plain = model.backbone_copy().eval()
    reference = create_backbone("resnet18").eval()
    reference.load_state_dict(plain.state_dict())
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain(image), reference(image))
    model.training_step(Batch([torch.rand(2, 1, 64, 64)]))  # the original still trains sparsely


def test_spark_config_errors():
    with pytest.raises(ConfigError, match="not divisible by SparK's patch size 32"):
        SparK(create_backbone("resnet18"), image_size=200)
    with pytest.raises(ConfigError, match="mask_ratio"):
        SparK(create_backbone("resnet18"), mask_ratio=1.0)
    with pytest.raises(ConfigError, match="unknown method 'barlow'"):
        create_method("barlow", create_backbone("resnet18"))
    with pytest.raises(ConfigError, match=r"method simclr: unknown options \['queue_size'\]"):
        create_method("simclr", create_backbone("resnet18"), queue_size=8)
    with pytest.raises(ConfigError, match="not divisible by SparK's patch size 32"):
        SparK.check_options(200, {})  # what the engine asks before building anything
    SparK.check_options(224, {"mask_ratio": 0.75})


def test_simclr_step_is_nt_xent_of_the_projections():
    torch.manual_seed(0)
    model = SimCLR(create_backbone("resnet18"), hidden_dim=64, projection_dim=16, temperature=0.2)
    views = [torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)]
    loss = model.training_step(Batch(views))
    z = model.projection(model.backbone(torch.cat(views)))
    torch.testing.assert_close(loss, naive_nt_xent(z[:4], z[4:], 0.2), rtol=1e-4, atol=1e-5)


def test_moco_step_momentum_and_queue():
    torch.manual_seed(0)
    model = MoCo(create_backbone("resnet18"), hidden_dim=64, projection_dim=16, queue_size=32, momentum=0.9)
    with torch.no_grad():  # make the online encoder differ from the momentum one
        for p in model.backbone.parameters():
            p.add_(0.01)
    before = {k: v.clone() for k, v in model.momentum_backbone.state_dict().items()}
    online = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    queue = model.loss.queue.clone()
    views = [torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)]
    loss = model.training_step(Batch(views))
    for name, p in model.momentum_backbone.named_parameters():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * online[name])
    query = model.projection(model.backbone(views[0]))
    with torch.no_grad():
        key = model.momentum_projection(model.momentum_backbone(views[1]))
    torch.testing.assert_close(loss, naive_moco(query, key, queue, 0.2), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.loss.queue[:4], F.normalize(key, dim=1), rtol=1e-4, atol=1e-5)


def test_moco_momentum_follows_its_cosine_schedule():
    model = MoCo(create_backbone("resnet18"), hidden_dim=16, projection_dim=8, queue_size=8, momentum=0.99,
                 momentum_end=1.0)
    for step, expected in [(0, 0.99), (50, 0.995), (100, 1.0)]:
        model.schedule(step, 100, 10)
        assert model.momentum == pytest.approx(expected)
    constant = MoCo(create_backbone("resnet18"), hidden_dim=16, projection_dim=8, queue_size=8, momentum=0.9)
    constant.schedule(50, 100, 10)
    assert constant.momentum == 0.9


def test_method_views_and_hooks_are_their_own():
    """What the loop asks of each method, which once lived in the engine as tables and branches."""
    spark, = SparK.crops(64, {}, {})
    assert spark.count == 1 and spark.augment.scale == (0.67, 1.0) and spark.augment.blur == 0.0
    simclr, = SimCLR.crops(32, {"blur": 0.0}, {})
    assert simclr.count == 2 and simclr.augment.size == (32, 32) and simclr.augment.blur == 0.0
    assert simclr.augment.rotation == 10.0  # the ViewAugment default the contrastive methods keep
    assert SparK.ddp_unused_parameters and not SimCLR.ddp_unused_parameters and not MoCo.ddp_unused_parameters
    model = SparK(create_backbone("resnet18"), image_size=64, decoder_width=32)
    assert model.generators() == {"mask": model.generator}
    with pytest.raises(ConfigError, match="augment"):
        SimCLR.crops(32, {"blur": 2.0}, {})
