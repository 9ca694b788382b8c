"""The sparse encoder on the GPU: forward + backward of timm's ResNet-50 and ConvNeXt-T (1-channel
stems) at 224², batch 32, SparK's mask at ratio 0.6, in fp32 and under bf16 autocast.

cxrfast's SparseEncoder runs with each backend forced by CXRFAST_BACKEND (triton, cuda) and with
CXRFAST_BACKEND=cpu: the torch gather + GEMM path, which runs on CUDA tensors too. The other
baseline is SparK's way: DenseMaskedEncoder, the dense network on the zero-filled image with the
masked outputs zeroed."""

from __future__ import annotations

import torch

from gpu.measure import Row, run_case, time_steps

SECTION = "encoder"
TITLE = "Sparse encoder, forward + backward"
MODELS = ("resnet50", "convnext_tiny")
BATCH, SIZE, RATIO, PATCH = 32, 224, 0.6, 32
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
TORCH_PATH, DENSE = "torch gather+GEMM (CXRFAST_BACKEND=cpu)", "SparK dense-masked"
# Each contender runs in its own process, with these variables set (and CXRFAST_BACKEND unset
# where it names none).
CONTENDERS = {"cxrfast triton": {"CXRFAST_BACKEND": "triton"}, "cxrfast cuda": {"CXRFAST_BACKEND": "cuda"},
              TORCH_PATH: {"CXRFAST_BACKEND": "cpu"}, DENSE: {}}
BASELINES = (TORCH_PATH, DENSE)


def case_name(model: str) -> str:
    return f"{model} {SIZE}² batch {BATCH} mask {RATIO} fwd+bwd"


def _plan(contender: str) -> list[tuple[Row, tuple]]:
    """Each case's row and the arguments of `_measure` that produce it."""
    return [(Row(SECTION, case_name(m), p, contender, items=BATCH), (m, dtype)) for m in MODELS
            for p, dtype in PRECISIONS.items()]


def cases(contender: str) -> list[Row]:
    return [row for row, _ in _plan(contender)]


def _measure(model: str, dtype: torch.dtype | None, dense: bool):
    from cxrfast.nn.masking import spark_mask
    from cxrfast.models import create_backbone
    from cxrfast.nn import DenseMaskedEncoder, SparseEncoder

    torch.manual_seed(0)
    grid = SIZE // PATCH
    kept = max(1, round(grid * grid * (1 - RATIO)))  # SparK's fixed count: the layout needs no host sync
    encoder = (DenseMaskedEncoder if dense else SparseEncoder)(create_backbone(model), kept=kept).cuda()
    images = torch.randn(BATCH, 1, SIZE, SIZE, device="cuda")
    visible = spark_mask(BATCH, grid, grid, RATIO, generator=torch.Generator().manual_seed(1)).cuda()

    def step():
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            features = encoder(images, visible)
            total = sum(f.float().sum() for f in features)
        total.backward()
        encoder.zero_grad(set_to_none=True)

    return time_steps(step)


def run(contender: str):
    for row, arguments in _plan(contender):
        yield run_case(row, lambda: _measure(*arguments, dense=contender == DENSE))
