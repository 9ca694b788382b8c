"""One DINO training step on ViT-S/16 (2 global crops at 224², 8 local crops at 96², batch 16,
65536 prototypes, fp32, this CPU): cxrfast's DINO (each crop size batched through the backbone
once, the fused DINOLoss) against a naive DINO on the same weights (every crop through the
backbone and head on its own, the pairwise loss over materialised probabilities). Speed is
pytest-benchmark's median; peak memory is measured in a fresh interpreter per contender."""

from __future__ import annotations

import sys

import pytest
import torch

from cxrfast.data.batch import Batch
from cxrfast.losses.reference import naive_dino
from cxrfast.methods import create_method
from cxrfast.models import create_backbone
from peak_memory import peak_in_fresh_interpreter, print_peak

BATCH, GLOBAL, LOCAL, LOCAL_CROPS = 16, 224, 96, 8


def _step(role: str):
    torch.manual_seed(0)
    backbone = create_backbone("vit_small", image_size=GLOBAL, drop_path_rate=0.1)
    dino = create_method("dino", backbone, GLOBAL, local_crops=LOCAL_CROPS, local_size=LOCAL)
    g = torch.Generator().manual_seed(1)
    views = [torch.rand(BATCH, 1, GLOBAL, GLOBAL, generator=g) for _ in range(2)] + \
        [torch.rand(BATCH, 1, LOCAL, LOCAL, generator=g) for _ in range(LOCAL_CROPS)]
    dino.schedule(1, 100, 10)

    def ours():
        dino.zero_grad(set_to_none=True)
        dino.training_step(Batch(views=views)).backward()

    def naive():
        dino.zero_grad(set_to_none=True)
        with torch.no_grad():
            teacher = torch.cat([dino.teacher_head(dino.teacher_backbone(v)) for v in views[:2]])
        student = torch.cat([dino.head(dino.backbone(v)) for v in views])
        naive_dino(student, teacher, dino.loss.center, len(views), 0.1, dino.teacher_temp).backward()

    return ours if role == "cxrfast" else naive


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
def test_dino_step(benchmark, tag, role):
    benchmark.group = f"DINO step, ViT-S/16, 2×{GLOBAL}² + {LOCAL_CROPS}×{LOCAL}², batch {BATCH}"
    tag(role, BATCH, "naive DINO (crops one by one, pairwise loss)" if role == "baseline" else None)
    benchmark.extra_info["peak_MiB"] = peak_in_fresh_interpreter(__file__, role)
    benchmark.pedantic(_step(role), rounds=3, warmup_rounds=1, iterations=1)


if __name__ == "__main__":  # one contender's peak memory, in a fresh interpreter
    print_peak(_step(sys.argv[1]))
