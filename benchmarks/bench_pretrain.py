"""SparK training steps (forward, backward, LAMB step) for ResNet-50 at 224², batch 16, mask 0.6,
on this machine: cxrfast's SparK (sparse encoder, its default decoder width) against a
SparK-style dense-masked run with SparK's 768-wide decoder, and both encoders with the 768-wide
decoder (the encoder's gain alone); plus cxrfast's sparse encoder with narrower decoders, which
is what chose the default width. Same run, images/s from pytest-benchmark's median.
"""

from __future__ import annotations

import pytest
import torch

from cxrfast.data.batch import Batch
from cxrfast.methods.spark import DEFAULT_DECODER_WIDTH, SparK
from cxrfast.models import create_backbone
from cxrfast.models import import_timm

BATCH, SIZE = 16, 224
CASES = [  # group, role, label, sparse, decoder width
    ("cxrfast SparK vs SparK-style", "cxrfast", f"sparse encoder, decoder {DEFAULT_DECODER_WIDTH}", True,
     DEFAULT_DECODER_WIDTH),
    ("cxrfast SparK vs SparK-style", "baseline", "dense-masked encoder, decoder 768", False, 768),
    ("same 768 decoder: the encoder's gain", "cxrfast", "sparse encoder, decoder 768", True, 768),
    ("same 768 decoder: the encoder's gain", "baseline", "dense-masked encoder, decoder 768", False, 768),
    ("decoder width (sparse encoder)", "cxrfast", "decoder 256", True, 256),
    ("decoder width (sparse encoder)", "baseline", "decoder 768", True, 768),
]


@pytest.mark.parametrize("group,role,label,sparse,width", CASES, ids=[f"{c[0]} | {c[2]}" for c in CASES])
def test_spark_step(benchmark, tag, group, role, label, sparse, width):
    torch.manual_seed(0)
    model = SparK(create_backbone("resnet50"), image_size=SIZE, decoder_width=width, sparse=sparse)
    import_timm()
    from timm.optim import Lamb

    optimizer = Lamb(model.parameters(), lr=1e-4, weight_decay=0.04, max_grad_norm=None)
    batch = Batch([torch.rand(BATCH, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))])
    benchmark.group = f"SparK ResNet-50 {SIZE}² batch {BATCH} mask 0.6, train step: {group}"
    tag(role, BATCH, label)

    def step():
        model.training_step(batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
