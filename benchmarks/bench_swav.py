"""SwAV's Sinkhorn codes and swapped-prediction loss, forward and backward, fp32 on this CPU:
cxrfast's (codes kept as scale vectors, the cross-entropies from one log-sum-exp per crop and
sample) against SwAV's and lightly's loop (codes rewritten in place, a log-softmax and a product
per crop pair, kept by autograd) on the same cosine scores. K prototypes × B samples: SwAV's 3000
and DINOv2's 65,536, at B = 256 with SwAV's 8 crops (2 + 6) and at B = 4096 with the 2 global
crops. Speed is pytest-benchmark's median; peak memory is measured in a fresh interpreter per
contender and size."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from cxrfast.ops.sinkhorn import swapped_prediction, swapped_prediction_reference
from peak_memory import peak_in_fresh_interpreter, print_peak

SIZES = [(3000, 256, 8), (65536, 256, 8), (3000, 4096, 2), (65536, 4096, 2)]  # K, B, crops


def _step(role: str, prototypes: int, batch: int, crops: int):
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(crops * batch, 128, generator=g), dim=1)
    scores = (z @ F.normalize(torch.randn(prototypes, 128, generator=g), dim=1).t()).reshape(crops, batch, -1)
    scores.requires_grad_()
    loss = swapped_prediction if role == "cxrfast" else swapped_prediction_reference

    def step():
        scores.grad = None
        loss(scores).mean().backward()

    return step


@pytest.mark.parametrize("prototypes,batch,crops", SIZES)
@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
def test_swapped_prediction(benchmark, tag, role, prototypes, batch, crops):
    benchmark.group = f"SwAV Sinkhorn + swapped prediction, K {prototypes}, B {batch}, {crops} crops"
    tag(role, batch, "SwAV's / lightly's loop" if role == "baseline" else None)
    benchmark.extra_info["peak_MiB"] = peak_in_fresh_interpreter(__file__, role, str(prototypes), str(batch),
                                                                 str(crops))
    benchmark.pedantic(_step(role, prototypes, batch, crops), rounds=3, warmup_rounds=1, iterations=1)


if __name__ == "__main__":  # one contender's peak memory, in a fresh interpreter
    print_peak(_step(sys.argv[1], *map(int, sys.argv[2:])))
