"""SwAV's Sinkhorn codes and swapped-prediction loss, forward and backward, fp32 on this CPU:
cxrfast's (codes kept as scale vectors, the cross-entropies from one log-sum-exp per crop and
sample) against SwAV's and lightly's loop (codes rewritten in place, a log-softmax and a product
per crop pair, kept by autograd) on the same cosine scores. K prototypes × B samples: SwAV's 3000
and DINOv2's 65,536, at B = 256 with SwAV's 8 crops (2 + 6) and at B = 4096 with the 2 global
crops. Speed is pytest-benchmark's median; peak memory is measured in a fresh interpreter per
contender and size.

Where a CUDA GPU is, the fused backends (triton and cuda forced by CXRFAST_BACKEND, the scores
read in their own dtype) run against the same loop on the GPU, on fp32 and bf16 scores, peak
memory from torch's allocator; without one those rows skip, saying so."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from cxrfast.ops.sinkhorn import swapped_prediction, swapped_prediction_reference
from peak_memory import peak_in_fresh_interpreter, print_peak

SIZES = [(3000, 256, 8), (65536, 256, 8), (3000, 4096, 2), (65536, 4096, 2)]  # K, B, crops


def _scores(prototypes: int, batch: int, crops: int, device: str = "cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(crops * batch, 128, generator=g), dim=1)
    scores = (z @ F.normalize(torch.randn(prototypes, 128, generator=g), dim=1).t()).reshape(crops, batch, -1)
    return scores.to(device=device, dtype=dtype).requires_grad_()


def _step(role: str, prototypes: int, batch: int, crops: int):
    scores = _scores(prototypes, batch, crops)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused backends (triton, cuda) need a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("prototypes,batch,crops", SIZES)
@pytest.mark.parametrize("backend", ["triton", "cuda", "baseline"])
def test_swapped_prediction_gpu(benchmark, tag, monkeypatch, backend, prototypes, batch, crops, dtype):
    precision = str(dtype).removeprefix("torch.")
    benchmark.group = (f"SwAV Sinkhorn + swapped prediction on the GPU, {precision}, K {prototypes}, B {batch}, "
                       f"{crops} crops")
    if backend == "baseline":
        tag("baseline", batch, "SwAV's / lightly's loop")
        loss = swapped_prediction_reference
    else:
        tag("cxrfast", batch, f"cxrfast {backend}")
        monkeypatch.setenv("CXRFAST_BACKEND", backend)
        loss = swapped_prediction
    scores = _scores(prototypes, batch, crops, "cuda", dtype)

    def step():
        scores.grad = None
        loss(scores).mean().backward()
        torch.cuda.synchronize()

    step()  # Triton's compilation and the first launches stay out of the peak and the timings
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    benchmark.extra_info["peak_MiB"] = (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    benchmark.pedantic(step, rounds=5, warmup_rounds=1, iterations=1)


if __name__ == "__main__":  # one contender's peak memory, in a fresh interpreter
    print_peak(_step(sys.argv[1], *map(int, sys.argv[2:])))
