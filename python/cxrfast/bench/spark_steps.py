"""SparK training steps (forward, backward, LAMB step; ResNet-50 at 224², batch 16, mask 0.6 in
full), part of the pretraining suite:

- cxrfast's SparK (sparse encoder, its default decoder width) against a SparK-style dense-masked
  run with SparK's 768-wide decoder;
- both encoders with the 768-wide decoder: the encoder's gain alone;
- cxrfast's sparse encoder with a narrower decoder against the 768-wide one, which is what chose
  the default width.

On a GPU the sparse encoder's convolutions also run with the Triton and the CUDA backend forced."""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.bench.training_step import training_step
from cxrfast.data.batch import Batch
from cxrfast.methods.spark import DEFAULT_DECODER_WIDTH, SparK
from cxrfast.models import create_backbone, import_timm

SUITE = "pretrain"
FUSED_BACKENDS = ("triton", "cuda")
MASK_RATIO = 0.6


class Sizes(NamedTuple):
    backbone: str
    name: str  # the backbone in the table
    side: int
    batch: int
    widths: tuple[int, int, int]  # decoders: cxrfast's default, SparK's own, the narrower one tried
    rounds: int
    warmup: int


WIDTHS = (DEFAULT_DECODER_WIDTH, 768, 256)
SIZES = {"full": Sizes("resnet50", "ResNet-50", 224, 16, WIDTHS, 3, 1),
         "quick": Sizes("resnet18", "ResNet-18", 128, 8, WIDTHS, 3, 1),
         "tiny": Sizes("resnet18", "ResNet-18", 64, 4, (96, 192, 64), 1, 1)}  # a quarter of each width


def _step(sizes: Sizes, width: int, sparse: bool):
    def make(workspace: Workspace) -> Step:
        torch.manual_seed(0)
        model = SparK(create_backbone(sizes.backbone), image_size=sizes.side, decoder_width=width,
                      sparse=sparse).to(workspace.device)
        import_timm()
        from timm.optim import Lamb

        optimizer = Lamb(model.parameters(), lr=1e-4, weight_decay=0.04, max_grad_norm=None)
        images = workspace.shared(("spark images", sizes), lambda: torch.rand(
            sizes.batch, 1, sizes.side, sizes.side, generator=torch.Generator().manual_seed(1)).to(workspace.device))
        batch = Batch([images])
        return Step(training_step(lambda: model.training_step(batch), optimizer))

    return make


def cases(scale: str, device: str) -> list[Case]:
    sizes = SIZES[scale]
    default, spark, narrow = sizes.widths
    prefix = f"SparK {sizes.name} {sizes.side}² batch {sizes.batch} mask {MASK_RATIO}, train step"
    dense = f"dense-masked encoder, decoder {spark}"
    # group: its contenders (label, role, sparse encoder, decoder width), and whether the forced
    # backends race there (against the dense encoder; the width comparison holds the encoder fixed)
    groups = {
        "cxrfast SparK vs SparK-style": ([(f"sparse encoder, decoder {default}", "cxrfast", True, default),
                                          (dense, "baseline", False, spark)], True),
        f"same {spark} decoder: the encoder's gain": ([(f"sparse encoder, decoder {spark}", "cxrfast", True, spark),
                                                       (dense, "baseline", False, spark)], True),
        "decoder width (sparse encoder)": ([(f"decoder {narrow}", "cxrfast", True, narrow),
                                            (f"decoder {spark}", "baseline", True, spark)], False)}
    found = []
    for group, (contenders, race_backends) in groups.items():
        for label, role, sparse, width in contenders:
            case = functools.partial(Case, SUITE, f"{prefix}: {group}", role=role, items=sizes.batch,
                                     make=_step(sizes, width, sparse), rounds=sizes.rounds, warmup=sizes.warmup)
            found.append(case(label=label))
            if device == "cuda" and race_backends and role == "cxrfast":
                found += [case(label=f"cxrfast {backend}, {label}", backend=backend) for backend in FUSED_BACKENDS]
    return found
