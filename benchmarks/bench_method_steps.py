"""One training step (forward, backward, LARS step) of the contrastive methods on ResNet-50 at
224², batch 16, fp32 on this machine: SimCLR, MoCo and BYOL with 2 views, SwAV with its 2 × 224 +
6 × 96 crops (the views each method's `crops` asks for). Images/s from pytest-benchmark's median,
reported side by side; no baseline runs these methods' own code here."""

from __future__ import annotations

import pytest
import torch

from cxrfast.data.batch import Batch
from cxrfast.methods import create_method
from cxrfast.models import create_backbone, import_timm

BATCH, SIZE = 16, 224


@pytest.mark.parametrize("method", ["simclr", "moco", "byol", "swav"])
def test_method_step(benchmark, tag, method):
    torch.manual_seed(0)
    model = create_method(method, create_backbone("resnet50"), SIZE)
    import_timm()
    from timm.optim import Lars

    optimizer = Lars([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=1e-6)
    g = torch.Generator().manual_seed(1)
    batch = Batch([torch.rand(BATCH, 1, *crops.augment.size, generator=g)
                   for crops in type(model).crops(SIZE, {}, {}) for _ in range(crops.count)])
    steps = iter(range(10**6))

    def step():
        model.schedule(next(steps), 100, 10)
        loss = model.training_step(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    benchmark.group = f"{method} step, ResNet-50 {SIZE}², batch {BATCH} ({len(batch.views)} views)"
    tag("cxrfast", BATCH, method)
    loss = benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
    assert torch.isfinite(loss)
