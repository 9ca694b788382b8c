"""One training step (forward, backward, timm's LARS step) of the contrastive methods, fp32
(ResNet-50 at 224², batch 16 in full), part of the pretraining suite: SimCLR, MoCo and BYOL with
2 views, SwAV with its 2 global + 6 local crops (2 × 224² + 6 × 96² in full): the views each
method's `crops` asks for.

No baseline runs these methods' own code, so each method's floor is what any implementation of
it pays: the same backbone alone (no heads, no loss) taking forward, backward and the same LARS
step over the views the method trains it on, plus, for MoCo and BYOL, a copy of it encoding the
views their momentum encoder sees, without gradient. What the method adds to its encoder is its
ratio to that floor. On a GPU, the methods whose losses have fused kernels (SimCLR's and MoCo's
similarity reductions, SwAV's Sinkhorn and swapped prediction) also run with the Triton and the
CUDA backend forced."""

from __future__ import annotations

import copy
import itertools
from typing import NamedTuple

import torch
from torch import Tensor

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.bench.training_step import training_step
from cxrfast.data.batch import Batch
from cxrfast.methods import create_method, method_class
from cxrfast.methods.multicrop import MultiCropMethod
from cxrfast.models import create_backbone, import_timm

SUITE = "pretrain"
FUSED_BACKENDS = ("triton", "cuda")

class Encoding(NamedTuple):
    """What a method is in the table, and which views (indices; None: every view) its trained
    backbone and its momentum encoder encode."""

    name: str
    fused: bool  # its loss has Triton and CUDA kernels
    trained: tuple[int, ...] | None
    momentum: tuple[int, ...] | None


METHODS = {"simclr": Encoding("SimCLR", True, None, ()), "moco": Encoding("MoCo v2", True, (0,), (1,)),
           "byol": Encoding("BYOL", False, None, None), "swav": Encoding("SwAV", True, None, ())}


class Sizes(NamedTuple):
    backbone: str
    name: str  # the backbone in the table
    side: int
    batch: int
    local_side: int  # the multi-crop methods' local crops
    rounds: int
    warmup: int


SIZES = {"full": Sizes("resnet50", "ResNet-50", 224, 16, 96, 3, 1),
         "quick": Sizes("resnet18", "ResNet-18", 128, 8, 64, 3, 1),
         "tiny": Sizes("resnet18", "ResNet-18", 64, 4, 32, 1, 1)}


def _options(method: str, sizes: Sizes) -> dict:
    return {"local_size": sizes.local_side} if issubclass(method_class(method), MultiCropMethod) else {}


def _view_sides(method: str, sizes: Sizes) -> list[tuple[int, int]]:
    return [crops.augment.size for crops in method_class(method).crops(sizes.side, {}, _options(method, sizes))
            for _ in range(crops.count)]


def _views(method: str, sizes: Sizes) -> list[Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(sizes.batch, 1, *side, generator=generator) for side in _view_sides(method, sizes)]


def _lars(module: torch.nn.Module):
    import_timm()
    from timm.optim import Lars

    return Lars([p for p in module.parameters() if p.requires_grad], lr=0.1, weight_decay=1e-6)


def _encode(backbone: torch.nn.Module, views: list[Tensor]) -> list[Tensor]:
    """Features of the views, each size batched through the backbone once, as the methods do."""
    return [backbone(torch.cat(list(same))) for _, same in itertools.groupby(views, key=lambda v: v.shape)]


def _floor(method: str, backbone: torch.nn.Module, views: list[Tensor]):
    """The loss of the backbone's own step: its features' mean over the views the method trains it
    on, after its momentum copy (if any) has encoded its views."""
    chosen = lambda indices: views if indices is None else [views[i] for i in indices]  # noqa: E731
    trained, momentum = chosen(METHODS[method].trained), chosen(METHODS[method].momentum)
    target = copy.deepcopy(backbone).requires_grad_(False) if momentum else None

    def loss() -> Tensor:
        if target is not None:
            with torch.no_grad():
                _encode(target, momentum)
        return sum(f.mean() for f in _encode(backbone, trained))

    return loss


def _step(method: str, sizes: Sizes, role: str):
    def make(workspace: Workspace) -> Step:
        views = [v.to(workspace.device) for v in workspace.shared(("views", method, sizes),
                                                                  lambda: _views(method, sizes))]
        torch.manual_seed(0)
        backbone = create_backbone(sizes.backbone)
        if role == "floor":
            model = backbone.to(workspace.device)
            loss = _floor(method, model, views)
        else:
            model = create_method(method, backbone, sizes.side, **_options(method, sizes)).to(workspace.device)
            steps, batch = itertools.count(), Batch(views)

            def loss() -> Tensor:
                model.schedule(next(steps), 100, 10)
                return model.training_step(batch)

        return Step(training_step(loss, _lars(model)))

    return make


def cases(scale: str, device: str) -> list[Case]:
    sizes = SIZES[scale]
    found = []
    for method, encoding in METHODS.items():
        views = len(_view_sides(method, sizes))
        group = f"{encoding.name} step, {sizes.name} {sizes.side}², batch {sizes.batch} ({views} views)"

        def case(label: str, role: str, backend: str | None = None) -> Case:
            return Case(SUITE, group, label, role, sizes.batch, _step(method, sizes, role), rounds=sizes.rounds,
                        warmup=sizes.warmup, backend=backend)

        found.append(case("cxrfast", "cxrfast"))
        if device == "cuda" and encoding.fused:
            found += [case(f"cxrfast {backend}", "cxrfast", backend) for backend in FUSED_BACKENDS]
        found.append(case("the encoder's own step on the same views", "floor"))
    return found
