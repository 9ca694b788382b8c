"""GMML's corruption of a batch of 64 single-channel images at 224² (noise over U(0.5, 0.75) of
each image, or 30% pasted from another image, pixel-aligned rectangles as GMML's default):
cxrfast's batched masks (a C++ kernel painting each image's round of rectangles, a C++ fill)
against two per-image loops written from the definition (`group_corruption_reference`):

- GMML's procedure, what its code does per batch: every image noise-corrupted in the Dataset,
  then about half of them corrupted again from the clean image by pasting (GMML_replace_list);
- the oracle alone, each image corrupted once, the cheapest a per-image loop can be.

Then one GMML training step on ViT-S/16, reported in images per second.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from cxrfast.nn.group_masking import group_corruption
from cxrfast.nn.group_masking_reference import group_corruption_reference

BATCH, SIZE = 64, 224


def _gmml_procedure(images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Its cost, not its exact draws: the redone half takes its donors among itself."""
    corrupted, masks = group_corruption_reference(images, replace=0.0, generator=generator)  # the Dataset's
    redone = torch.rand(len(images), generator=generator) < 0.5
    corrupted[redone], masks[redone] = group_corruption_reference(images[redone], replace=1.0, generator=generator)
    return corrupted, masks


@pytest.mark.parametrize("role", ["cxrfast", "baseline", "oracle"])
def test_gmml_corruption(benchmark, tag, role):
    images = torch.randn(BATCH, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    benchmark.group = f"GMML corruption, batch {BATCH} at {SIZE}²"
    if role == "cxrfast":
        tag(role, BATCH)
        corrupted, masks = benchmark.pedantic(group_corruption, (images,), {"generator": generator}, rounds=10,
                                              warmup_rounds=1)
    elif role == "baseline":
        tag(role, BATCH, "GMML's procedure (per-image loops: noise for all, half redone by pasting)")
        corrupted, masks = benchmark.pedantic(_gmml_procedure, (images, generator), rounds=3, iterations=1)
    else:
        tag("baseline", BATCH, "the per-image oracle (each image corrupted once)")
        corrupted, masks = benchmark.pedantic(group_corruption_reference, (images,), {"generator": generator},
                                              rounds=3, iterations=1)
    share = masks.float().mean((1, 2, 3))
    assert ((share >= 0.3) & (share < 0.84)).all()  # every image corrupted within GMML's bounds


STEP_BATCH = 8  # images, two views of each through the backbone


def test_gmml_step(benchmark, tag):
    """One GMML training step (forward and backward, corruption included) on ViT-S/16 at 224²,
    fp32 on this CPU: reported in images per second; no baseline runs GMML's model here."""
    from cxrfast.data.batch import Batch
    from cxrfast.methods import create_method
    from cxrfast.models import create_backbone

    torch.manual_seed(0)
    method = create_method("gmml", create_backbone("vit_small", image_size=SIZE, drop_path_rate=0.1), SIZE)
    views = [torch.rand(STEP_BATCH, 1, SIZE, SIZE) for _ in range(2)]

    def step():
        method.zero_grad(set_to_none=True)
        loss = method.training_step(Batch(views=views))
        loss.backward()
        return loss

    benchmark.group = f"GMML step, ViT-S/16, batch {STEP_BATCH} at {SIZE}²"
    tag("cxrfast", STEP_BATCH)
    loss = benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    assert torch.isfinite(loss)
