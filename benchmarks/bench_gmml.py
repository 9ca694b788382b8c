"""GMML's corruption of a batch of 64 single-channel images at 224² (noise over U(0.5, 0.75) of
each image, or 30% pasted from another image, pixel-aligned rectangles as GMML's default):
cxrfast's batched masks (a C++ kernel painting each image's round of rectangles) against the
per-image loop of GMML's code, written from the same definition (`group_corruption_reference`)."""

from __future__ import annotations

import pytest
import torch

from cxrfast.nn.group_masking import group_corruption
from cxrfast.nn.group_masking_reference import group_corruption_reference

BATCH, SIZE = 64, 224


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
def test_gmml_corruption(benchmark, tag, role):
    images = torch.randn(BATCH, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    benchmark.group = f"GMML corruption, batch {BATCH} at {SIZE}²"
    if role == "cxrfast":
        tag(role, BATCH)
        corrupted, masks = benchmark.pedantic(group_corruption, (images,), {"generator": generator}, rounds=10,
                                              warmup_rounds=1)
    else:
        tag(role, BATCH, "GMML's per-image loop")
        corrupted, masks = benchmark.pedantic(group_corruption_reference, (images,), {"generator": generator},
                                              rounds=3, iterations=1)
    share = masks.float().mean((1, 2, 3))
    assert ((share >= 0.3) & (share < 0.84)).all()  # every image corrupted within GMML's bounds
