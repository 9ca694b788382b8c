"""One benchmark case: a contender (cxrfast, the baseline a user would otherwise run, or a floor
nothing can beat) doing one step of one comparison, and the workspace its inputs are built in.

A suite lists its cases for a scale ("full" for BENCHMARKS.md, "quick" for a laptop, "tiny" for
the test suite) and a device. Building a case's step is outside the timing; `make` may also check
that the contender agrees with the reference before it is timed, so a fast wrong answer fails."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SCALES = ("full", "quick", "tiny")
Role = Literal["cxrfast", "baseline", "floor"]


@dataclass
class Step:
    """What one timed round runs, and what the case measured while building it."""

    run: Callable[[], object]
    saved_mib: float | None = None  # activation memory autograd keeps for backward, where it is the point
    close: Callable[[], None] | None = None  # releases workers or files once the case is timed


@dataclass(frozen=True)
class Case:
    suite: str
    group: str  # what is compared: every case of a group does the same work
    label: str  # who does it
    role: Role
    items: int  # images (or replicates, or losses) one round handles: figures are per item
    make: Callable[["Workspace"], Step] = field(compare=False, repr=False)
    rounds: int = 3
    warmup: int = 1
    unit: str = "image"
    one_thread: bool = False  # per-core throughput: torch and cxrfast's native code on one thread
    peak: bool = False  # peak memory of one round, measured in a fresh interpreter
    backend: str | None = None  # CXRFAST_BACKEND while it runs (the GPU's Triton and CUDA paths)
    skip: str | None = None  # why this contender cannot run at this size (the report says so)

    @property
    def id(self) -> str:
        return f"{self.group} | {self.label}"


class Workspace:
    """Where a suite's cases build their inputs; files and models built once are shared by every
    case that asks for them by the same key."""

    def __init__(self, root: Path, device: str = "cpu"):
        self.root = Path(root)
        self.device = device
        self._built: dict[object, object] = {}

    def shared(self, key: object, build: Callable[[], object]):
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def directory(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@contextmanager
def case_settings(case: Case):
    """The thread count and forced backend a case runs under, restored afterwards."""
    import torch

    from cxrfast import _C

    threads = torch.get_num_threads(), _C.get_num_threads()
    backend = os.environ.get("CXRFAST_BACKEND")
    if case.one_thread:
        torch.set_num_threads(1)
        _C.set_num_threads(1)
    if case.backend is not None:
        os.environ["CXRFAST_BACKEND"] = case.backend
    try:
        yield
    finally:
        torch.set_num_threads(threads[0])
        _C.set_num_threads(threads[1])
        if backend is None:
            os.environ.pop("CXRFAST_BACKEND", None)
        else:
            os.environ["CXRFAST_BACKEND"] = backend
