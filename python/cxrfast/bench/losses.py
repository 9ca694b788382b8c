"""Fused losses against the naive ones, forward + backward in fp32, same run: NT-Xent, CLIP and
SigLIP at N rows of D features against the whole logit matrix kept for backward, DINO at B
samples of K prototypes over 2 global + 8 local crops against its pairwise loop, and SwAV's
Sinkhorn and swapped prediction against SwAV's loop (cxrfast.bench.swav).

Each case also records its peak memory: how far one forward + backward takes memory above where
it stood before (cxrfast.bench.timing), the point of never storing the logits. At N = 32k the
naive losses need one 64k² (NT-Xent) or 32k² (CLIP) logit matrix of 16 or 4 GiB and keep
several, more than a 24 GiB machine holds: only ours runs there. On a GPU the similarity losses
also run with the Triton and the CUDA backend forced; DINO's loss has no fused backend."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrfast.bench import swav
from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.losses import ClipLoss, DINOLoss, NTXentLoss, SigLipLoss
from cxrfast.losses.reference import naive_clip, naive_dino, naive_nt_xent, naive_siglip

SUITE = "losses"
SIMILARITY_LOSSES = ("ntxent", "clip", "siglip")
# N rows, D features
SIMILARITY_SIZES = {"full": [(1024, 128), (1024, 512), (4096, 128), (4096, 512), (16384, 128), (32768, 128)],
                    "quick": [(1024, 128), (4096, 128)], "tiny": [(256, 64)]}
DINO_SIZES = {"full": [(64, 65536), (256, 65536)], "quick": [(64, 16384)], "tiny": [(8, 1024)]}  # B, K
DINO_CROPS = 10
NAIVE_LIMIT = 16384  # above it the naive logits alone outgrow a 24 GiB machine
FUSED_BACKENDS = ("triton", "cuda")
TEMPERATURE = 0.5


def _similarity_step(name: str, n: int, d: int, role: str):
    def make(workspace: Workspace) -> Step:
        device = workspace.device
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        if name != "ntxent":  # image-text losses take features the model normalised
            a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        a, b = a.to(device).requires_grad_(), b.to(device).requires_grad_()
        ours = {"ntxent": lambda: NTXentLoss(TEMPERATURE), "clip": ClipLoss, "siglip": SigLipLoss}[name]().to(device)
        labels = torch.arange(n, device=device)
        # The naive forms train the module's own logit scale and bias, as ours does.
        naive = {"ntxent": lambda x, y: naive_nt_xent(x, y, TEMPERATURE),
                 "clip": lambda x, y: naive_clip(x, y, ours.logit_scale, labels),
                 "siglip": lambda x, y: naive_siglip(x, y, ours.logit_scale, ours.logit_bias, labels)}[name]
        loss = ours if role == "cxrfast" else naive

        def run():
            loss(a, b).backward()
            a.grad = b.grad = None

        return Step(run)

    return make


def _dino_step(batch: int, prototypes: int, role: str):
    def make(workspace: Workspace) -> Step:
        device = workspace.device
        g = torch.Generator().manual_seed(0)
        student = torch.randn(DINO_CROPS * batch, prototypes, generator=g).to(device).requires_grad_()
        teacher = torch.randn(2 * batch, prototypes, generator=g).to(device)
        dino = DINOLoss(prototypes).to(device)
        loss = dino if role == "cxrfast" else (
            lambda s, t: naive_dino(s, t, dino.center, DINO_CROPS, dino.student_temp, dino.teacher_temp))

        def run():
            loss(student, teacher).backward()
            student.grad = None

        return Step(run)

    return make


def _naive_skip(name: str, n: int) -> str | None:
    if n <= NAIVE_LIMIT:
        return None
    rows = 2 * n if name == "ntxent" else n
    return f"the naive {name} loss keeps several {rows**2 * 4 / 2**30:.0f} GiB logit matrices at N = {n:,}"


def _similarity_case(scale: str, name: str, n: int, d: int, label: str, role: str,
                     backend: str | None = None) -> Case:
    return Case(SUITE, f"{name} N={n} D={d} fp32 fwd+bwd", label, role, 1, _similarity_step(name, n, d, role),
                rounds=3 if n >= 16384 else 5, unit="loss",
                peak=scale != "tiny" or name == SIMILARITY_LOSSES[0],  # tiny: one loss's fresh interpreters only
                backend=backend, skip=_naive_skip(name, n) if role == "baseline" else None)


def _similarity_cases(scale: str, device: str) -> list[Case]:
    found = []
    for name in SIMILARITY_LOSSES:
        for n, d in SIMILARITY_SIZES[scale]:
            found.append(_similarity_case(scale, name, n, d, "cxrfast", "cxrfast"))
            if device == "cuda":
                found += [_similarity_case(scale, name, n, d, f"cxrfast {backend}", "cxrfast", backend)
                          for backend in FUSED_BACKENDS]
            found.append(_similarity_case(scale, name, n, d, "naive (logits kept)", "baseline"))
    return found


def _dino_cases(scale: str) -> list[Case]:
    found = []
    for batch, prototypes in DINO_SIZES[scale]:
        group = f"dino B={batch} K={prototypes} {DINO_CROPS} crops fp32 fwd+bwd"
        found += [Case(SUITE, group, label, role, 1, _dino_step(batch, prototypes, role), rounds=5, unit="loss",
                       peak=scale != "tiny")
                  for label, role in (("cxrfast", "cxrfast"), ("pairwise loop (a log-softmax per pair)", "baseline"))]
    return found


def cases(scale: str, device: str) -> list[Case]:
    return _similarity_cases(scale, device) + _dino_cases(scale) + swav.cases(scale, device)
