"""GMML's corruption and its training step, part of the pretraining suite.

The corruption of a batch of single-channel images (64 at 224² in full; noise over U(0.5, 0.75)
of each image, or 30% pasted from another image, pixel-aligned rectangles as GMML's default):
cxrfast's batched masks (a C++ kernel painting each image's round of rectangles, a C++ fill; the
torch reference on a GPU) against two per-image loops written from the definition
(`group_corruption_reference`), which run on the CPU whatever the device, as GMML's Dataset does:

- GMML's procedure, what its code does per batch: every image noise-corrupted in the Dataset,
  then about half of them corrupted again from the clean image by pasting (GMML_replace_list);
- the oracle alone, each image corrupted once, the cheapest a per-image loop can be.
Every contender's masks must cover each image within GMML's bounds before it is timed.

Then one GMML training step (both views corrupted, forward and backward) on ViT-S/16 at 224²,
batch 8, figures per image. No baseline runs GMML's own model here, so its floor is the same
ViT's own step on the clean views (forward and backward of the 16 views, no corruption, no
intermediate blocks, no pixel head): what GMML adds to the backbone is its ratio to the floor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.bench.training_step import training_step
from cxrfast.data.batch import Batch
from cxrfast.methods import create_method
from cxrfast.models import create_backbone
from cxrfast.nn.group_masking import group_corruption
from cxrfast.nn.group_masking_reference import group_corruption_reference

SUITE = "pretrain"
CORRUPTION = {"full": (64, 224), "quick": (64, 224), "tiny": (16, 64)}  # images, side
# backbone, its name in the table, timm's options for it, images (two views each), side; the tiny
# ViT keeps GMML's 12 blocks, narrowed
STEP = {"full": ("vit_small", "ViT-S/16", {}, 8, 224), "quick": ("vit_small", "ViT-S/16", {}, 4, 96),
        "tiny": ("vit_tiny_patch16_224", "ViT/16 of width 48", dict(embed_dim=48, num_heads=3), 8, 64)}


def _gmml_procedure(images: Tensor, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Its cost, not its exact draws: the redone half takes its donors among itself."""
    corrupted, masks = group_corruption_reference(images, replace=0.0, generator=generator)  # the Dataset's
    redone = torch.rand(len(images), generator=generator) < 0.5
    corrupted[redone], masks[redone] = group_corruption_reference(images[redone], replace=1.0, generator=generator)
    return corrupted, masks


def _check_shares(masks: Tensor) -> None:
    share = masks.float().mean((1, 2, 3))
    if not ((share >= 0.3) & (share < 0.84)).all():
        raise AssertionError(f"corrupted shares {share.tolist()} outside GMML's bounds [0.3, 0.84)")


def _corruption(batch: int, side: int, corrupt: Callable[..., tuple[Tensor, Tensor]]):
    def make(workspace: Workspace) -> Step:
        device = workspace.device if corrupt is group_corruption else "cpu"  # GMML's loops run in its Dataset
        images = workspace.shared(("gmml images", batch, side, device), lambda: torch.randn(
            batch, 1, side, side, generator=torch.Generator().manual_seed(0)).to(device))
        generator = torch.Generator().manual_seed(1)
        _check_shares(corrupt(images, generator=generator)[1])
        return Step(lambda: corrupt(images, generator=generator))

    return make


def _training_step(backbone: str, options: dict, batch: int, side: int, role: str):
    def make(workspace: Workspace) -> Step:
        torch.manual_seed(0)
        vit = create_backbone(backbone, image_size=side, drop_path_rate=0.1, **options)
        views = [torch.rand(batch, 1, side, side).to(workspace.device) for _ in range(2)]
        clean = torch.cat(views)
        model = (create_method("gmml", vit, side) if role == "cxrfast" else vit).to(workspace.device)

        def loss() -> Tensor:
            if role == "cxrfast":
                return model.training_step(Batch(views=views))
            return model.forward_features(clean).mean()

        return Step(training_step(loss, model=model))

    return make


def cases(scale: str, device: str) -> list[Case]:
    batch, side = CORRUPTION[scale]
    group = f"GMML corruption, batch {batch} at {side}²"
    found = [
        Case(SUITE, group, "cxrfast", "cxrfast", batch, _corruption(batch, side, group_corruption), rounds=10),
        Case(SUITE, group, "GMML's procedure (per-image loops: noise for all, half redone by pasting)", "baseline",
             batch, _corruption(batch, side, _gmml_procedure), warmup=0),
        Case(SUITE, group, "the per-image oracle (each image corrupted once)", "baseline", batch,
             _corruption(batch, side, group_corruption_reference), warmup=0),
    ]
    backbone, name, options, batch, side = STEP[scale]
    group = f"GMML step, {name}, batch {batch} at {side}²"
    for label, role in (("cxrfast", "cxrfast"), ("the ViT's own step on the clean views", "floor")):
        found.append(Case(SUITE, group, label, role, batch, _training_step(backbone, options, batch, side, role)))
    return found
