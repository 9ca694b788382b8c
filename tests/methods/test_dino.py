"""DINO on a small ViT (and a ResNet): the teacher gets no gradient and follows the EMA formula,
the temperature and momentum schedules match their formulas, a step's loss equals DINO's pairwise
loss on crops run one by one, the last layer is frozen for the first epoch, stochastic depth is
the student's only, and the multi-crop views are what the options say. (The centre's update
across 2 gloo processes is tested with the loss, tests/losses/test_dino.py; a killed and resumed
DINO run, with the engine, tests/train/test_engine.py.)"""

from __future__ import annotations

import math

import pytest
import torch

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.losses.reference import naive_dino
from cxrfast.methods import DINO, create_method
from cxrfast.methods.dino import teacher_temperature
from cxrfast.models import create_backbone, import_timm
from cxrfast.train import load_config, pretrain
from cxrfast.train.recipes import recipe

SMALL = dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, local_crops=3, local_size=16)


def _vit(drop_path=0.0):
    timm = import_timm()
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, in_chans=1, num_classes=0, embed_dim=32, depth=2, num_heads=2,
        dynamic_img_size=True, drop_path_rate=drop_path)


def _views(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, 1, 32, 32, generator=g) for _ in range(2)] + \
        [torch.rand(b, 1, 16, 16, generator=g) for _ in range(3)]


def test_the_teacher_gets_no_gradient_and_follows_the_ema():
    torch.manual_seed(0)
    dino = DINO(_vit(), **SMALL, freeze_last_layer=0)
    optimizer = torch.optim.SGD([p for p in dino.parameters() if p.requires_grad], lr=0.5)
    teacher = lambda: [p.detach().clone() for p in [*dino.teacher_backbone.parameters(),  # noqa: E731
                                                    *dino.teacher_head.parameters()]]
    student = lambda: [p.detach().clone() for p in [*dino.backbone.parameters(), *dino.head.parameters()]]  # noqa
    start = teacher()
    assert all(torch.equal(a, b) for a, b in zip(start, student()))  # the same weights at the start
    dino.schedule(0, 10, 5)
    dino.training_step(Batch(views=_views())).backward()
    assert all(p.grad is None for p in [*dino.teacher_backbone.parameters(), *dino.teacher_head.parameters()])
    optimizer.step()
    moved = student()
    dino.schedule(1, 10, 5)
    dino.training_step(Batch(views=_views(seed=1)))
    m = 0.996  # the momentum of step 0, applied after it
    for before, now, s in zip(start, teacher(), moved):
        torch.testing.assert_close(now, m * before + (1 - m) * s)
    assert not all(torch.equal(a, b) for a, b in zip(start, moved))


def test_schedules_match_their_formulas():
    assert [teacher_temperature(e, 0.04, 0.07, 30) for e in (0, 15, 29, 30, 99)] == pytest.approx(
        [0.04, 0.04 + 0.03 * 15 / 29, 0.07, 0.07, 0.07])
    assert teacher_temperature(5, 0.04, 0.04, 0) == 0.04  # the code's default: constant
    dino = DINO(_vit(), **SMALL, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=30)
    total, per_epoch = 1000, 10
    for step in (1, 155, 299, 300, 999):
        dino.schedule(step, total, per_epoch)
        assert dino.teacher_temp == pytest.approx(teacher_temperature(step // per_epoch, 0.04, 0.07, 30))
        expected = 1 - (1 - 0.996) * (math.cos(math.pi * (step - 1) / total) + 1) / 2
        assert dino.ema.momentum == pytest.approx(expected)


def test_a_step_is_dinos_pairwise_loss_on_crops_run_one_by_one():
    torch.manual_seed(1)
    dino = DINO(_vit(), **SMALL, teacher_temp=0.07, warmup_teacher_temp=0.05, warmup_teacher_temp_epochs=3)
    dino.loss.center.normal_()
    center = dino.loss.center.clone()
    dino.schedule(12, 100, 10)  # epoch 1: teacher temperature 0.06
    views = _views()
    loss = dino.training_step(Batch(views=views))
    with torch.no_grad():
        student = torch.cat([dino.head(dino.backbone(v)) for v in views])
        teacher = torch.cat([dino.teacher_head(dino.teacher_backbone(v)) for v in views[:2]])
    expected = naive_dino(student, teacher, center, len(views), 0.1, 0.06)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dino.loss.center, center * 0.9 + teacher.mean(0, keepdim=True) * 0.1)


def test_the_last_layer_is_frozen_for_the_first_epochs():
    dino = DINO(_vit(), **SMALL, freeze_last_layer=1)
    last = list(dino.head.last_layer.parameters())
    assert [p.requires_grad for p in last] == [False, True]  # norm_last_layer: the magnitude stays 1
    for step, frozen in ((0, True), (4, True), (5, False)):
        dino.zero_grad(set_to_none=True)
        dino.schedule(step, 20, 5)
        dino.training_step(Batch(views=_views())).backward()
        dino.after_backward(step)
        assert (last[1].grad is None) == frozen
        assert dino.head.mlp[0].weight.grad is not None


def test_stochastic_depth_is_the_students_only():
    dino = DINO(_vit(drop_path=0.2), **SMALL)
    assert dino.backbone.blocks[1].drop_path1.drop_prob == pytest.approx(0.2)
    assert dino.teacher_backbone.blocks[1].drop_path1.drop_prob == 0
    exported = dino.backbone_copy()
    assert all(p.requires_grad for p in exported.parameters())


def test_multi_crop_views_follow_the_options():
    global_crops, local = DINO.crops(224, {}, {})
    assert (global_crops.count, global_crops.augment.size, global_crops.augment.scale) == (2, (224, 224), (0.4, 1.0))
    assert (local.count, local.augment.size, local.augment.scale) == (8, (96, 96), (0.05, 0.4))
    assert global_crops.augment.hflip == 0.5 and global_crops.augment.rotation == 0
    only, = DINO.crops(64, {"blur": 0.0}, {"local_crops": 0, "global_scale": [0.5, 1.0]})
    assert only.augment.scale == (0.5, 1.0) and only.augment.blur == 0.0
    with pytest.raises(ConfigError, match="augment"):
        DINO.crops(64, {"blur": 3.0}, {})


def test_dino_on_a_resnet():
    dino = create_method("dino", create_backbone("resnet18"), 32, **SMALL)
    views = [torch.rand(4, 1, 32, 32) for _ in range(2)] + [torch.rand(4, 1, 16, 16) for _ in range(3)]
    dino.schedule(0, 10, 5)
    loss = dino.training_step(Batch(views=views))
    loss.backward()
    assert torch.isfinite(loss) and dino.backbone.conv1.weight.grad is not None
    with pytest.raises(ConfigError, match="momentum"):
        DINO(create_backbone("resnet18"), momentum=1.5)


def test_the_recipe_holds_the_papers_settings_and_runs_on_a_small_vit(tmp_path, phantoms):
    preset = recipe("dino", "pretrain").values()
    config = load_config(preset=preset, data=".")
    config.check()
    assert (config.method, config.backbone, config.lr, config.min_lr, config.warmup_epochs, config.epochs) == \
        ("dino", "vit_small", 5e-4, 1e-6, 10, 100)
    assert (config.weight_decay, config.weight_decay_end, config.clip_grad, config.clip_grad_mode, config.drop_path) == \
        (0.04, 0.4, 3.0, "per_parameter", 0.1)
    assert config.method_options == {"teacher_temp": 0.07, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_epochs": 30}
    # The recipe's run, shrunk: a ViT taking 32² global and 16² local crops through one backbone.
    small = {**preset, "backbone": "vit_tiny_patch16_224", "image_size": 32, "epochs": 2, "batch_size": 4,
             "workers": 0, "warmup_epochs": 1, "method_options": {**preset["method_options"], **SMALL,
                                                                   "warmup_teacher_temp_epochs": 2}}
    result = pretrain(load_config(preset=small, data=str(phantoms), out=str(tmp_path / "run")), progress=False)
    assert result.steps == 10 and all(math.isfinite(loss) for loss in result.losses)
    encoder = import_timm().create_model("vit_tiny_patch16_224", img_size=32, in_chans=1, num_classes=0,
                                         checkpoint_path=str(result.encoder))
    assert encoder(torch.rand(1, 1, 32, 32)).shape == (1, 192)
