"""One benchmark case as a row of the GPU check's table: a median time and a peak of CUDA memory,
or the error that stopped it.

Times are wall-clock between two `torch.cuda.synchronize()`s, so they hold the host's launch
overhead as well as the kernels (the sparse encoder's many small ops are launch-bound). Peak
memory is torch's allocator high-water mark during the timed steps above what was allocated
before them (weights and inputs), so it counts activations, gradients and scratch."""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch

WARMUP, REPEATS = 2, 5


@dataclass
class Row:
    section: str  # which table: "encoder", "losses", "loader"
    case: str  # what was measured, e.g. "resnet50 224² batch 32 mask 0.6 fwd+bwd"
    precision: str  # "fp32" or "bf16"
    contender: str  # who ran it, e.g. "cxrfast triton" or a baseline's name
    ms: float | None = None  # median of the timed repeats
    peak_mib: float | None = None
    items: int = 1  # images (or losses) one step handles: the loader's table shows items / s
    error: str | None = None  # why it did not run: a failure
    unsupported: str | None = None  # the forced backend declared it cannot take this input

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.section, self.case, self.precision, self.contender


def time_steps(step: Callable[[], object], warmup: int = WARMUP, repeats: int = REPEATS) -> tuple[float, float]:
    """(median ms, peak MiB above the resting allocation) of `step` after `warmup` untimed calls
    (Triton compiles its kernels in the first)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    resting = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, (torch.cuda.max_memory_allocated() - resting) / 2**20


def _forced_backend_refused(error: BaseException) -> bool:
    """A backend forced by CXRFAST_BACKEND that states it cannot run an op on this input: a
    configuration the table reports, not a broken kernel."""
    text = str(error)
    return text.startswith("CXRFAST_BACKEND=") and "cannot run" in text


def run_case(row: Row, measure: Callable[[], tuple[float, float]]) -> Row:
    """`row` with the time and memory `measure()` returns, or with the error it raised."""
    try:
        row.ms, row.peak_mib = measure()
    except Exception as error:  # every failure becomes a row; the check fails on it at the end
        if _forced_backend_refused(error):
            row.unsupported = str(error)
        else:
            row.error = f"{type(error).__name__}: {error}"
            traceback.print_exc()
    return row
