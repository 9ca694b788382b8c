"""Fused contrastive losses against the naive ones (the whole logit matrix, kept for backward):
forward + backward of NT-Xent and CLIP, fp32, same run.

Speed is pytest-benchmark's median. Peak memory is how far the process's resident set peaks
above where it stood before one forward + backward, in a fresh interpreter per case (Linux's
peak counter is reset first, so imports do not hide it); recorded as extra_info["peak_MiB"] and
printed in the table. At N = 32k the naive losses need one 64k² (NT-Xent) or 32k² (CLIP) logit
matrix of 16 or 4 GiB and keep several: more than this 24 GiB machine. Only ours runs there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "losses"))
from test_contrastive import naive_clip, naive_nt_xent  # noqa: E402

from cxrfast.losses import ClipLoss, NTXentLoss  # noqa: E402

CASES = [(1024, 128), (1024, 512), (4096, 128), (4096, 512), (16384, 128), (32768, 128)]
NAIVE_LIMIT = 16384  # above it the naive logits alone outgrow this machine's memory


def _loss(name: str, role: str, n: int, d: int):
    """The inputs and a closure running one forward + backward."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, d, generator=g)
    b = torch.randn(n, d, generator=g)
    if name == "clip":
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    a.requires_grad_()
    b.requires_grad_()
    if name == "ntxent":
        loss = NTXentLoss(0.5) if role == "cxrfast" else (lambda x, y: naive_nt_xent(x, y, 0.5))
    else:
        clip = ClipLoss()
        loss = clip if role == "cxrfast" else (lambda x, y: naive_clip(x, y, clip.logit_scale, torch.arange(n)))

    def step():
        loss(a, b).backward()
        a.grad = b.grad = None

    return step


def _peak_mib(name: str, role: str, n: int, d: int) -> float:
    out = subprocess.run([sys.executable, __file__, name, role, str(n), str(d)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_MiB"]


@pytest.mark.parametrize("role", ["cxrfast", "baseline"])
@pytest.mark.parametrize("n,d", CASES, ids=[f"N{n}-D{d}" for n, d in CASES])
@pytest.mark.parametrize("name", ["ntxent", "clip"])
def test_loss_step(benchmark, tag, name, n, d, role):
    if role == "baseline" and n > NAIVE_LIMIT:
        pytest.skip(f"the naive {name} loss keeps several {(2 * n if name == 'ntxent' else n) ** 2 * 4 / 2**30:.0f} GiB "
                    "logit matrices at this N: more than this machine's memory")
    benchmark.group = f"{name} N={n} D={d} fp32 fwd+bwd"
    tag(role, 1, "naive (logits kept)" if role == "baseline" else None)
    benchmark.extra_info["peak_MiB"] = _peak_mib(name, role, n, d)
    benchmark.pedantic(_loss(name, role, n, d), rounds=3 if n >= 16384 else 5, warmup_rounds=1, iterations=1)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


if __name__ == "__main__":  # one case's peak memory, in a fresh interpreter
    name, role, n, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    step = _loss(name, role, n, d)
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the current size
    before = _status_kib("VmRSS")
    step()
    print(json.dumps({"peak_MiB": (_status_kib("VmHWM") - before) / 1024}))
