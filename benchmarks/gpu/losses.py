"""The fused contrastive losses on the GPU against the naive ones: forward + backward of NT-Xent,
CLIP and SigLIP at N rows of D features, fp32 features and bf16 features under autocast.

cxrfast's losses run with the triton and the cuda backend forced by CXRFAST_BACKEND. The naive
loss (cxrfast.losses.reference) is what a user writes: the whole logit matrix, kept by autograd
for backward. It uses the
same module's logit scale and bias, so both sides train the same parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gpu.measure import Row, run_case, time_steps

SECTION = "losses"
TITLE = "Contrastive losses, forward + backward"
LOSSES = ("NT-Xent", "CLIP", "SigLIP")
SIZES = ((4096, 256), (16384, 128))  # the naive NT-Xent keeps several 2N × 2N fp32 matrices: 4 GiB each at 16k
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
TEMPERATURE = 0.1
NAIVE = "naive (whole logit matrix)"
CONTENDERS = {"cxrfast triton": {"CXRFAST_BACKEND": "triton"}, "cxrfast cuda": {"CXRFAST_BACKEND": "cuda"},
              NAIVE: {}}
BASELINES = (NAIVE,)


def case_name(loss: str, n: int, d: int) -> str:
    return f"{loss} N={n} D={d}"


def _plan(contender: str) -> list[tuple[Row, tuple]]:
    """Each case's row and the arguments of `_measure` that produce it."""
    return [(Row(SECTION, case_name(loss, n, d), p, contender), (loss, n, d, dtype)) for loss in LOSSES
            for n, d in SIZES for p, dtype in PRECISIONS.items()]


def cases(contender: str) -> list[Row]:
    return [row for row, _ in _plan(contender)]


def _measure(loss: str, n: int, d: int, dtype: torch.dtype, naive: bool):
    from cxrfast.losses import ClipLoss, NTXentLoss, SigLipLoss
    from cxrfast.losses.reference import naive_clip, naive_nt_xent, naive_siglip

    g = torch.Generator(device="cuda").manual_seed(0)
    a, b = (torch.randn(n, d, device="cuda", generator=g) for _ in range(2))
    if loss != "NT-Xent":  # image-text losses take features the model normalised
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    a, b = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
    labels = torch.arange(n, device="cuda")
    module = {"NT-Xent": lambda: NTXentLoss(TEMPERATURE), "CLIP": ClipLoss, "SigLIP": SigLipLoss}[loss]().cuda()
    if not naive:
        forward = module
    elif loss == "NT-Xent":
        forward = lambda x, y: naive_nt_xent(x, y, TEMPERATURE)  # noqa: E731
    elif loss == "CLIP":
        forward = lambda x, y: naive_clip(x, y, module.logit_scale, labels)  # noqa: E731
    else:
        forward = lambda x, y: naive_siglip(x, y, module.logit_scale, module.logit_bias, labels)  # noqa: E731

    def step():
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            value = forward(a, b)
        value.backward()
        a.grad = b.grad = None
        module.zero_grad(set_to_none=True)

    return time_steps(step)


def run(contender: str):
    for row, arguments in _plan(contender):
        yield run_case(row, lambda: _measure(*arguments, naive=contender == NAIVE))
