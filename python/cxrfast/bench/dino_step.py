"""One DINO training step (forward and backward; ViT-S/16, 2 global crops at 224², 8 local crops at
96², batch 16, 65536 prototypes, fp32 in full), part of the pretraining suite: cxrfast's DINO
(each crop size batched through the backbone once, the fused DINOLoss) against a naive DINO on
the same weights (every crop through the backbone and head on its own, the pairwise loss over
materialised probabilities, `cxrfast.losses.reference.naive_dino`). Each contender's peak memory
is measured too, in a fresh interpreter."""

from __future__ import annotations

from typing import NamedTuple

import torch

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.bench.training_step import training_step
from cxrfast.data.batch import Batch
from cxrfast.losses.reference import naive_dino
from cxrfast.methods import create_method
from cxrfast.methods.dino import DINO
from cxrfast.methods.multicrop import GLOBAL_CROPS
from cxrfast.models import create_backbone

SUITE = "pretrain"


class Sizes(NamedTuple):
    backbone: str
    name: str  # the backbone in the table
    global_side: int
    local_side: int
    local_crops: int
    batch: int
    prototypes: int
    hidden: int  # the head's MLP
    bottleneck: int
    rounds: int
    warmup: int


SIZES = {"full": Sizes("vit_small", "ViT-S/16", 224, 96, 8, 16, 65536, 2048, 256, 3, 1),
         "quick": Sizes("vit_small", "ViT-S/16", 112, 48, 8, 8, 65536, 2048, 256, 3, 1),
         "tiny": Sizes("vit_tiny_patch16_224", "ViT-Ti/16", 32, 16, 2, 4, 1024, 256, 64, 1, 1)}


def _naive_loss(dino: DINO, views: list[torch.Tensor]) -> torch.Tensor:
    """Every crop through the backbone and head on its own, then the pairwise loss."""
    with torch.no_grad():
        teacher = torch.cat([dino.teacher_head(dino.teacher_backbone(v)) for v in views[:GLOBAL_CROPS]])
    student = torch.cat([dino.head(dino.backbone(v)) for v in views])
    return naive_dino(student, teacher, dino.loss.center, len(views), dino.loss.student_temp, dino.teacher_temp)


def _step(sizes: Sizes, role: str):
    def make(workspace: Workspace) -> Step:
        torch.manual_seed(0)
        backbone = create_backbone(sizes.backbone, image_size=sizes.global_side, drop_path_rate=0.1)
        dino = create_method("dino", backbone, sizes.global_side, local_crops=sizes.local_crops,
                             local_size=sizes.local_side, out_dim=sizes.prototypes, hidden_dim=sizes.hidden,
                             bottleneck_dim=sizes.bottleneck).to(workspace.device)
        generator = torch.Generator().manual_seed(1)
        views = [torch.rand(sizes.batch, 1, side, side, generator=generator).to(workspace.device)
                 for side in [sizes.global_side] * GLOBAL_CROPS + [sizes.local_side] * sizes.local_crops]
        dino.schedule(1, 100, 10)

        def loss() -> torch.Tensor:
            return dino.training_step(Batch(views=views)) if role == "cxrfast" else _naive_loss(dino, views)

        return Step(training_step(loss, model=dino))

    return make


def cases(scale: str, device: str) -> list[Case]:
    s = SIZES[scale]
    group = (f"DINO step, {s.name}, {GLOBAL_CROPS}×{s.global_side}² + {s.local_crops}×{s.local_side}², "
             f"batch {s.batch}, {s.prototypes:,} prototypes")
    return [Case(SUITE, group, label, role, s.batch, _step(s, role), rounds=s.rounds, warmup=s.warmup, peak=True)
            for label, role in (("cxrfast", "cxrfast"), ("naive DINO (crops one by one, pairwise loss)", "baseline"))]
