"""Timing a case's rounds, and its peak memory.

Times are wall-clock per round; on a GPU each round is bracketed by `torch.cuda.synchronize()`,
so it holds the host's launch overhead as well as the kernels. Peak memory on the CPU is how far
the resident set rises above where it stood just before one round, in a fresh interpreter
(Linux's peak counter is reset first, so imports and inputs do not hide it, and memory an earlier
case left in the allocator cannot flatter it); on a GPU it is torch's allocator high-water mark
above the memory held before the round."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cxrfast.errors import CxrfastError


@dataclass(frozen=True)
class Timing:
    median_s: float
    iqr_s: float
    rounds: int


def _synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def time_rounds(run: Callable[[], object], rounds: int, warmup: int, device: str = "cpu") -> Timing:
    for _ in range(warmup):  # compilation, caches, workers starting
        run()
    times = []
    for _ in range(rounds):
        _synchronize(device)
        start = time.perf_counter()
        run()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Timing(statistics.median(times), quartiles[2] - quartiles[0], rounds)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise CxrfastError(f"/proc/self/status has no {field}: peak memory is measured on Linux only")


def peak_of_round(run: Callable[[], object], device: str = "cpu") -> float:
    """MiB one round needs above what was held before it, in this process."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        resting = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - resting) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM restarts from the current resident set
    before = _status_kib("VmRSS")
    run()
    return max(_status_kib("VmHWM") - before, 0) / 2**10  # the counter restarts a few pages below `before`


def peak_in_fresh_interpreter(suite: str, scale: str, device: str, case_id: str) -> float:
    """`peak_of_round` of one case, rebuilt in a child interpreter (`python -m cxrfast.bench.peak`)."""
    child = subprocess.run([sys.executable, "-m", "cxrfast.bench.peak", suite, scale, device, case_id],
                           capture_output=True, text=True)
    if child.returncode != 0:
        tail = child.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CxrfastError(f"measuring the peak memory of {case_id!r} failed: {tail[0]}")
    return json.loads(child.stdout.strip().splitlines()[-1])["peak_MiB"]
