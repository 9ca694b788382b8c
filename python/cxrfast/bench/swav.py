"""SwAV's Sinkhorn codes and swapped-prediction loss, forward and backward: cxrfast's (codes kept
as scale vectors, the cross-entropies from one log-sum-exp per crop and sample) against SwAV's
and lightly's loop (codes rewritten in place, a log-softmax and a product per crop pair, kept by
autograd) on the same cosine scores. K prototypes × B samples: SwAV's 3000 and DINOv2's 65,536,
at B = 256 with SwAV's 8 crops (2 + 6) and at B = 4096 with the 2 global crops; fp32, with the
peak memory of each contender and size.

On a GPU the fused backends (triton and cuda forced by CXRFAST_BACKEND, reading the scores in
their own dtype) run as well, against the same loop, on fp32 and bf16 scores. These cases run
in the losses suite (cxrfast.bench.losses)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.ops.sinkhorn import swapped_prediction, swapped_prediction_reference

SUITE = "losses"
SIZES = {"full": [(3000, 256, 8), (65536, 256, 8), (3000, 4096, 2), (65536, 4096, 2)],  # K, B, crops
         "quick": [(3000, 256, 8), (3000, 1024, 2)], "tiny": [(300, 32, 4)]}
PRECISIONS = {"cpu": {"fp32": torch.float32}, "cuda": {"fp32": torch.float32, "bf16": torch.bfloat16}}
FUSED_BACKENDS = ("triton", "cuda")
FEATURES = 128


def _scores(prototypes: int, batch: int, crops: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """(crops, B, K) cosine scores of normalised features against normalised prototypes."""
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(crops * batch, FEATURES, generator=g), dim=1)
    scores = (z @ F.normalize(torch.randn(prototypes, FEATURES, generator=g), dim=1).t()).reshape(crops, batch, -1)
    return scores.to(device=device, dtype=dtype).requires_grad_()


def _swapped_prediction_step(prototypes: int, batch: int, crops: int, dtype: torch.dtype, role: str):
    def make(workspace: Workspace) -> Step:
        scores = _scores(prototypes, batch, crops, workspace.device, dtype)
        loss = swapped_prediction if role == "cxrfast" else swapped_prediction_reference

        def run():
            scores.grad = None
            loss(scores).mean().backward()

        return Step(run)

    return make


def _case(device: str, size: tuple[int, int, int], precision: str, label: str, role: str,
          backend: str | None = None) -> Case:
    prototypes, batch, crops = size
    group = f"SwAV Sinkhorn + swapped prediction, {precision}, K {prototypes}, B {batch}, {crops} crops"
    return Case(SUITE, group, label, role, batch,
                _swapped_prediction_step(prototypes, batch, crops, PRECISIONS[device][precision], role),
                rounds=5 if device == "cuda" else 3, peak=True, backend=backend)


def cases(scale: str, device: str) -> list[Case]:
    found = []
    for size in SIZES[scale]:
        for precision in PRECISIONS[device]:
            found.append(_case(device, size, precision, "cxrfast", "cxrfast"))
            if device == "cuda":
                found += [_case(device, size, precision, f"cxrfast {backend}", "cxrfast", backend)
                          for backend in FUSED_BACKENDS]
            found.append(_case(device, size, precision, "SwAV's / lightly's loop", "baseline"))
    return found
