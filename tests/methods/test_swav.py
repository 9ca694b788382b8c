"""SwAV: prototypes renormalised before every step and unmoved while frozen (under LARS with weight
decay), the loss equal to SwAV's loop on the method's own scores with the queue's, the queue
filled newest first from its epoch and used once full, SwAV's multi-crop, bad options refused,
and the recipe run end to end, shrunk. Resuming a killed run is in tests/train/test_engine.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.methods import SwAV, create_method
from cxrfast.models import create_backbone, import_timm
from cxrfast.ops.sinkhorn import swapped_prediction_reference
from cxrfast.train import load_config, pretrain
from cxrfast.train.recipes import recipe

SMALL = dict(prototypes=20, feature_dim=8, hidden_dim=32, local_crops=2, local_size=16)


def _batch(seed, batch=4):
    g = torch.Generator().manual_seed(seed)
    return Batch(views=[torch.rand(batch, 1, 32, 32, generator=g) for _ in range(2)]
                 + [torch.rand(batch, 1, 16, 16, generator=g) for _ in range(2)])


def test_prototypes_are_unit_and_frozen_for_their_steps():
    torch.manual_seed(0)
    swav = SwAV(create_backbone("resnet18"), **SMALL, freeze_prototypes_steps=3)
    import_timm()
    from timm.optim import Lars

    optimizer = Lars([p for p in swav.parameters() if p.requires_grad], lr=0.5, weight_decay=0.1)
    history = []
    for step in range(5):
        swav.schedule(step, 10, 5)
        swav.training_step(_batch(step)).backward()
        torch.testing.assert_close(swav.prototypes.weight.norm(dim=1), torch.ones(20))
        normalised = swav.prototypes.weight.detach().clone()
        swav.after_backward(step)
        assert (swav.prototypes.weight.grad is None) == (step < 3)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append((normalised, swav.prototypes.weight.detach().clone()))
    for step, (before, after) in enumerate(history):
        assert torch.equal(before, after) == (step < 3), step
    # Renormalising unit prototypes moves them by rounding only.
    torch.testing.assert_close(history[0][1], history[2][1], rtol=0, atol=1e-7)


def test_the_loss_and_the_queue_follow_swav():
    torch.manual_seed(1)
    swav = SwAV(create_backbone("resnet18"), **SMALL, queue_length=8, epoch_queue_starts=1)
    swav.schedule(0, 20, 5)
    swav.training_step(_batch(0))
    assert int(swav.queued) == 0 and not swav.queue.any()  # nothing queued before its epoch
    embeddings = []
    for step in range(5, 8):
        swav.schedule(step, 20, 5)
        batch, queue = _batch(step), swav.queue.clone()
        full = step == 7  # two batches of 4 fill it
        loss = swav.training_step(batch)
        with torch.no_grad():
            z = F.normalize(swav.projection(swav.crop_features(swav.backbone, batch)), dim=1).reshape(4, 4, -1)
            scores = swav.prototypes(z)
            expected = swapped_prediction_reference(scores, (0, 1), 0.1, queue=(
                [swav.prototypes(q) for q in queue] if full else None)).mean()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(swav.queue, torch.cat([z[:2], queue[:, :4]], 1), rtol=1e-5, atol=1e-6)
        embeddings.append(z[:2])
    assert int(swav.queued) == 12
    torch.testing.assert_close(swav.queue, torch.cat([embeddings[2], embeddings[1]], 1), rtol=1e-5, atol=1e-6)
    assert {"queue", "queued"} <= set(swav.state_dict())  # so a resumed run has them


def test_swav_multi_crop_and_bad_options():
    global_crops, local = SwAV.crops(224, {}, {})
    assert (global_crops.count, global_crops.augment.size, global_crops.augment.scale) == (2, (224, 224), (0.14, 1.0))
    assert (local.count, local.augment.size, local.augment.scale) == (6, (96, 96), (0.05, 0.14))
    backbone = create_backbone("resnet18")
    with pytest.raises(ConfigError, match=r"crops_for_assign \[0, 4\] must name distinct crops among the 4"):
        create_method("swav", backbone, crops_for_assign=[0, 4], local_crops=2)
    with pytest.raises(ConfigError, match="queue length not negative"):
        create_method("swav", backbone, queue_length=-1)
    with pytest.raises(ConfigError, match="temperature and epsilon must be positive"):
        create_method("swav", backbone, epsilon=0.0)
    with pytest.raises(ConfigError, match="unknown options"):
        create_method("swav", backbone, nmb_prototypes=10)


def test_the_recipe_and_a_shrunk_run(tmp_path, phantoms):
    preset = recipe("swav", "pretrain").values()
    config = load_config(preset=preset, data=".")
    config.check()
    assert (config.optimizer, config.lr, config.min_lr, config.weight_decay) == ("lars", 0.6, 0.0006, 1e-6)
    assert {k: config.method_options[k] for k in ("prototypes", "freeze_prototypes_steps", "queue_length")} == {
        "prototypes": 3000, "freeze_prototypes_steps": 313, "queue_length": 3840}
    small = {**preset, "backbone": "resnet18", "image_size": 32, "epochs": 2, "batch_size": 4, "workers": 0,
             "warmup_epochs": 0, "method_options": {**SMALL, "queue_length": 4, "epoch_queue_starts": 1,
                                                    "freeze_prototypes_steps": 2}}
    result = pretrain(load_config(preset=small, data=str(phantoms), out=str(tmp_path / "run")), progress=False)
    # Cross-entropies of cosine scores over 20 prototypes at temperature 0.1: below log 20 + 2 / 0.1.
    assert result.steps == 10 and all(math.isfinite(loss) and 0 < loss < math.log(20) + 20 for loss in result.losses)
