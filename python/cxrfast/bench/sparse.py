"""SparseEncoder against SparK's dense-masked encoder (`DenseMaskedEncoder`: the dense network on
the zero-filled image, masked outputs zeroed): forward + backward of timm's ResNet-50 and
ConvNeXt-T (1-channel stems) at 224², batch 8, mask ratios 0.6 and 0.75, same run.

Besides the time, each case records the activation memory autograd keeps for backward (saved
tensors, each storage counted once), which the sparse encoder exists to cut. On a GPU the
sparse convolutions also run with the Triton and the CUDA backend forced; ConvNeXt's depthwise
convolutions have neither, so its forced rows are not run."""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.models import import_timm
from cxrfast.nn import DenseMaskedEncoder, SparseEncoder
from cxrfast.nn.masking import spark_mask
from cxrfast.ops import sparse_depthwise

SUITE = "sparse"
FUSED_BACKENDS = ("triton", "cuda")


class Sizes(NamedTuple):
    models: tuple[str, ...]
    size: int
    batch: int
    ratios: tuple[float, ...]
    rounds: int


SIZES = {"full": Sizes(("resnet50", "convnext_tiny"), 224, 8, (0.6, 0.75), 5),
         "quick": Sizes(("resnet50", "convnext_tiny"), 224, 4, (0.6, 0.75), 3),
         "tiny": Sizes(("resnet18", "convnext_atto"), 64, 2, (0.6,), 2)}


def _encoders(model: str, device: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    backbone = import_timm().create_model(model, in_chans=1)
    twin = copy.deepcopy(backbone)  # before conversion: each encoder converts its own copy
    return {"cxrfast": SparseEncoder(backbone).to(device), "baseline": DenseMaskedEncoder(twin).to(device)}


def saved_bytes(encoder: torch.nn.Module, images: torch.Tensor, visible: torch.Tensor) -> int:
    """Bytes of the tensors one forward keeps for backward, each storage once."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        encoder(images, visible)
    return sum(storages.values())


def _encoder_step(model: str, sizes: Sizes, ratio: float, role: str):
    def make(workspace: Workspace) -> Step:
        device = workspace.device
        encoder = workspace.shared(("encoders", model), lambda: _encoders(model, device))[role]
        images = torch.randn(sizes.batch, 1, sizes.size, sizes.size, generator=torch.Generator().manual_seed(1))
        grid = sizes.size // 32
        visible = spark_mask(sizes.batch, grid, grid, ratio, generator=torch.Generator().manual_seed(1))
        images, visible = images.to(device), visible.to(device)

        def run():
            features = encoder(images, visible)
            sum(f.float().sum() for f in features).backward()
            encoder.zero_grad(set_to_none=True)

        return Step(run, saved_mib=saved_bytes(encoder, images, visible) / 2**20)

    return make


def _lacks(model: str, backend: str) -> str | None:
    """Why this backend cannot be forced on this backbone's sparse encoder, or None."""
    if model.startswith("convnext") and backend not in sparse_depthwise.OP.backends:
        return f"ConvNeXt's depthwise convolutions have no {backend} backend"
    return None


def _case(sizes: Sizes, model: str, ratio: float, label: str, role: str, backend: str | None = None) -> Case:
    group = f"{model} {sizes.size}² batch {sizes.batch} mask {ratio} fwd+bwd"
    return Case(SUITE, group, label, role, sizes.batch, _encoder_step(model, sizes, ratio, role), rounds=sizes.rounds,
                backend=backend, skip=None if backend is None else _lacks(model, backend))


def cases(scale: str, device: str) -> list[Case]:
    sizes = SIZES[scale]
    found = []
    for model in sizes.models:
        for ratio in sizes.ratios:
            found.append(_case(sizes, model, ratio, "cxrfast", "cxrfast"))
            if device == "cuda":
                found += [_case(sizes, model, ratio, f"cxrfast {b}", "cxrfast", b) for b in FUSED_BACKENDS]
            found.append(_case(sizes, model, ratio, "SparK dense-masked", "baseline"))
    return found
