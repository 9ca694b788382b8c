"""BYOL: the target gets no gradient and follows the EMA formula with its cosine momentum, the
loss equals 2 − 2·cos of each view's prediction against the other's target projection, both
directions added, and the recipe runs end to end, shrunk."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.methods import BYOL, create_method
from cxrfast.models import create_backbone
from cxrfast.train import load_config, pretrain
from cxrfast.train.recipes import recipe

SMALL = dict(projection_dim=8, hidden_dim=32)


def _views(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(4, 1, 32, 32, generator=g) for _ in range(2)]


def test_the_target_gets_no_gradient_and_follows_the_ema():
    torch.manual_seed(0)
    byol = BYOL(create_backbone("resnet18"), **SMALL, momentum=0.9)
    online = lambda: [p.detach().clone() for p in [*byol.backbone.parameters(), *byol.projection.parameters()]]  # noqa
    target = lambda: [p.detach().clone() for p in [*byol.target_backbone.parameters(),  # noqa: E731
                                                   *byol.target_projection.parameters()]]
    start = target()
    optimizer = torch.optim.SGD([p for p in byol.parameters() if p.requires_grad], lr=0.5)
    byol.schedule(0, 20, 5)
    byol.training_step(Batch(views=_views())).backward()
    assert all(p.grad is None for p in [*byol.target_backbone.parameters(), *byol.target_projection.parameters()])
    assert byol.prediction[0].weight.grad is not None
    optimizer.step()
    moved = online()
    byol.schedule(1, 20, 5)
    byol.training_step(Batch(views=_views(1)))
    for before, now, s in zip(start, target(), moved):
        torch.testing.assert_close(now, 0.9 * before + 0.1 * s)
    byol.training_step(Batch(views=_views(2)))  # a second batch of the same step moves nothing
    for a, b in zip(target(), [0.9 * before + 0.1 * s for before, s in zip(start, moved)]):
        torch.testing.assert_close(a, b)
    for step in (1, 10, 20):
        byol.schedule(step, 20, 5)
        assert byol.ema.momentum == pytest.approx(1 - 0.1 * (math.cos(math.pi * (step - 1) / 20) + 1) / 2)


def test_the_loss_is_symmetric_two_minus_two_cosine():
    torch.manual_seed(1)
    byol = BYOL(create_backbone("resnet18"), **SMALL)
    byol.schedule(0, 10, 5)
    views = _views()
    loss = byol.training_step(Batch(views=views))
    with torch.no_grad():
        both = torch.cat(views)
        p = byol.prediction(byol.projection(byol.backbone(both)))
        t = byol.target_projection(byol.target_backbone(both))
    p0, p1, t0, t1 = (*F.normalize(p, dim=1).chunk(2), *F.normalize(t, dim=1).chunk(2))
    expected = sum((2 - 2 * (a * b).sum(1)).mean() for a, b in ((p0, t1), (p1, t0)))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="must rise within"):
        create_method("byol", create_backbone("resnet18"), momentum=0.99, momentum_end=0.9)


def test_the_recipe_and_a_shrunk_run(tmp_path, phantoms):
    preset = recipe("byol", "pretrain").values()
    config = load_config(preset=preset, data=".")
    config.check()
    assert (config.optimizer, config.lr, config.weight_decay, config.warmup_epochs, config.method_options) == (
        "lars", 0.45, 1e-6, 10, {"momentum": 0.99, "momentum_end": 1.0})
    small = {**preset, "backbone": "resnet18", "image_size": 32, "epochs": 1, "batch_size": 4, "workers": 0,
             "warmup_epochs": 0, "method_options": SMALL}
    result = pretrain(load_config(preset=small, data=str(phantoms), out=str(tmp_path / "run")), progress=False)
    assert result.steps == 5 and all(math.isfinite(loss) and 0 <= loss <= 8 for loss in result.losses)
