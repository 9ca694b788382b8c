"""SparseEncoder against SparK's dense-masked encoder: forward + backward of timm's ResNet-50 and
ConvNeXt-T (1-channel stems) at 224², batch 8, mask ratios 0.6 and 0.75, same run.

Speed is pytest-benchmark's median; memory is the activation memory autograd keeps for backward
(saved tensors, each storage counted once), recorded in extra_info and printed in the table.
"""

from __future__ import annotations

import copy

import pytest
import torch

from cxrfast.models import import_timm
from cxrfast.nn import DenseMaskedEncoder, SparseEncoder
from cxrfast.nn.masking import spark_mask

BATCH, SIZE = 8, 224
MODELS = ["resnet50", "convnext_tiny"]


@pytest.fixture(scope="module")
def encoders():
    built = {}
    for name in MODELS:
        torch.manual_seed(0)
        backbone = import_timm().create_model(name, in_chans=1)
        twin = copy.deepcopy(backbone)  # before conversion: each encoder converts its own copy
        built[name] = {"cxrfast": SparseEncoder(backbone), "baseline": DenseMaskedEncoder(twin)}
    return built


def saved_bytes(encoder, images, visible) -> int:
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        encoder(images, visible)
    return sum(storages.values())


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
@pytest.mark.parametrize("ratio", [0.6, 0.75])
@pytest.mark.parametrize("model", MODELS)
def test_encoder_step(benchmark, tag, encoders, model, ratio, role):
    encoder = encoders[model][role]
    images = torch.randn(BATCH, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    visible = spark_mask(BATCH, SIZE // 32, SIZE // 32, ratio, generator=torch.Generator().manual_seed(1))
    benchmark.group = f"{model} 224² batch {BATCH} mask {ratio} fwd+bwd"
    tag(role, BATCH, "SparK dense-masked" if role == "baseline" else None)
    benchmark.extra_info["saved_MiB"] = saved_bytes(encoder, images, visible) / 2**20

    def step():
        features = encoder(images, visible)
        sum(f.float().sum() for f in features).backward()
        encoder.zero_grad(set_to_none=True)

    benchmark.pedantic(step, rounds=5, warmup_rounds=1, iterations=1)
