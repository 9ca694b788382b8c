"""Fused contrastive losses against the naive ones (the whole logit matrix, kept for backward):
forward + backward of NT-Xent, CLIP and SigLIP at N rows of D features, and of DINO at B samples
of K prototypes over 2 global + 8 local crops against its pairwise loop; fp32, same run.

Speed is pytest-benchmark's median. Peak memory is how far the process's resident set peaks
above where it stood before one forward + backward, in a fresh interpreter per case (Linux's
peak counter is reset first, so imports do not hide it); recorded as extra_info["peak_MiB"] and
printed in the table. At N = 32k the naive losses need one 64k² (NT-Xent) or 32k² (CLIP) logit
matrix of 16 or 4 GiB and keep several: more than this 24 GiB machine. Only ours runs there.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from cxrfast.losses import ClipLoss, DINOLoss, NTXentLoss, SigLipLoss
from cxrfast.losses.reference import naive_clip, naive_dino, naive_nt_xent, naive_siglip
from peak_memory import peak_in_fresh_interpreter, print_peak

CASES = [(1024, 128), (1024, 512), (4096, 128), (4096, 512), (16384, 128), (32768, 128)]
DINO_CASES = [(64, 65536), (256, 65536)]  # B samples, K prototypes (DINO's head)
DINO_CROPS = 10
NAIVE_LIMIT = 16384  # above it the naive logits alone outgrow this machine's memory


def _loss(name: str, role: str, n: int, d: int):
    """The inputs and a closure running one forward + backward."""
    g = torch.Generator().manual_seed(0)
    if name == "dino":
        a, b = torch.randn(DINO_CROPS * n, d, generator=g).requires_grad_(), torch.randn(2 * n, d, generator=g)
        dino = DINOLoss(d)
        loss = dino if role == "cxrfast" else (lambda x, y: naive_dino(x, y, dino.center, DINO_CROPS, 0.1, 0.04))
    else:
        a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        if name != "ntxent":
            a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        a.requires_grad_()
        b.requires_grad_()
        naive = {"ntxent": lambda x, y: naive_nt_xent(x, y, 0.5),
                 "clip": lambda x, y: naive_clip(x, y, ours.logit_scale, torch.arange(n)),
                 "siglip": lambda x, y: naive_siglip(x, y, ours.logit_scale, ours.logit_bias, torch.arange(n))}[name]
        ours = {"ntxent": NTXentLoss(0.5), "clip": ClipLoss(), "siglip": SigLipLoss()}[name]
        loss = ours if role == "cxrfast" else naive

    def step():
        loss(a, b).backward()
        a.grad = b.grad = None

    return step


def _peak_mib(name: str, role: str, n: int, d: int) -> float:
    return peak_in_fresh_interpreter(__file__, name, role, str(n), str(d))


def _measure(benchmark, tag, name: str, n: int, d: int, role: str, group: str, baseline_label: str) -> None:
    benchmark.group = group
    tag(role, 1, baseline_label if role == "baseline" else None)
    benchmark.extra_info["peak_MiB"] = _peak_mib(name, role, n, d)
    benchmark.pedantic(_loss(name, role, n, d), rounds=3 if n >= 16384 else 5, warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
@pytest.mark.parametrize("n,d", CASES, ids=[f"N{n}-D{d}" for n, d in CASES])
@pytest.mark.parametrize("name", ["ntxent", "clip", "siglip"])
def test_loss_step(benchmark, tag, name, n, d, role):
    if role == "baseline" and n > NAIVE_LIMIT:
        pytest.skip(f"the naive {name} loss keeps several {(2 * n if name == 'ntxent' else n) ** 2 * 4 / 2**30:.0f} GiB "
                    "logit matrices at this N: more than this machine's memory")
    _measure(benchmark, tag, name, n, d, role, f"{name} N={n} D={d} fp32 fwd+bwd", "naive (logits kept)")


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
@pytest.mark.parametrize("n,d", DINO_CASES, ids=[f"B{n}-K{d}" for n, d in DINO_CASES])
def test_dino_step(benchmark, tag, n, d, role):
    _measure(benchmark, tag, "dino", n, d, role, f"dino B={n} K={d} {DINO_CROPS} crops fp32 fwd+bwd",
             "pairwise loop (a log-softmax per pair)")


if __name__ == "__main__":  # one case's peak memory, in a fresh interpreter
    name, role, n, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print_peak(_loss(name, role, n, d))
