"""Backend choice for every op, from one declaration per op.

An `Op` names its backends and what each takes: `reference` (the plain PyTorch oracle, always
there), `cpu` (torch or the C++ extension), `triton` and `cuda`, each with the dtypes and device
types it supports. Without CXRFAST_BACKEND the fastest backend that supports the input's device
and dtype and can run here is chosen; CXRFAST_BACKEND=reference|cpu|triton|cuda forces one, and a
forced backend that cannot run on the input raises ConfigError rather than falling back.

`record_backends()` collects the choices made inside it, so tests can see what ran. Choices made
while torch.compile traces are not recorded: a graph replays its ops without choosing again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from cxrfast.errors import ConfigError

BACKENDS = ("reference", "cpu", "triton", "cuda")
FLOATING = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
# Fastest first, for each device type; the reference is last everywhere.
PREFERENCE = {"cuda": ("cuda", "triton", "cpu", "reference"), "cpu": ("cpu", "triton", "reference")}

_recorders: list[list[tuple[str, str]]] = []
_cuda_extension: list[bool] = []  # filled once: whether cxrfast._cuda imports and sees a GPU


@dataclass(frozen=True)
class Support:
    """What one backend of an op takes: input dtypes and device types."""

    dtypes: frozenset[torch.dtype]
    devices: frozenset[str] = frozenset({"cpu", "cuda"})


@dataclass(frozen=True)
class Op:
    """An op's backends, each with what it supports; `reference` must be one of them."""

    name: str
    backends: dict[str, Support]

    def __post_init__(self):
        unknown = set(self.backends) - set(BACKENDS)
        if "reference" not in self.backends or unknown:
            raise ValueError(f"op {self.name}: backends must include 'reference' and come from {BACKENDS}, "
                             f"not {sorted(self.backends)}")

    def select(self, device: torch.device, dtype: torch.dtype) -> str:
        """The backend to run on inputs of `dtype` on `device`, recorded for `record_backends`."""
        forced = os.environ.get("CXRFAST_BACKEND", "").strip().lower()
        if forced:
            if forced not in BACKENDS:
                raise ConfigError(f"CXRFAST_BACKEND={forced!r} is not one of {', '.join(BACKENDS)}")
            problem = self._problem(forced, device, dtype)
            if problem:
                raise ConfigError(f"CXRFAST_BACKEND={forced} cannot run {self.name} here: {problem}")
            backend = forced
        else:
            for backend in PREFERENCE.get(device.type, ("cpu", "reference")):
                if backend == "reference" or not self._problem(backend, device, dtype):
                    break
        if _recorders and not torch.compiler.is_compiling():
            for choices in _recorders:
                choices.append((self.name, backend))
        return backend

    def _problem(self, backend: str, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why `backend` cannot run this op on `device` and `dtype` here, or None."""
        support = self.backends.get(backend)
        if support is None:
            return f"{self.name} has no {backend} backend (it has {', '.join(self.backends)})"
        if device.type not in support.devices:
            return f"its {backend} backend takes {' or '.join(sorted(support.devices))} tensors, not {device.type}"
        if dtype not in support.dtypes:
            names = ", ".join(sorted(str(d).removeprefix("torch.") for d in support.dtypes))
            return f"its {backend} backend takes {names}, not {str(dtype).removeprefix('torch.')}"
        return _unavailable(backend, device)


def _unavailable(backend: str, device: torch.device) -> str | None:
    """Why a backend cannot run on `device` on this machine, whatever the op, or None."""
    if backend == "cuda":
        if device.type != "cuda":
            return f"the cuda backend takes CUDA tensors, not {device.type}"
        if not _cuda_extension_usable():
            return "the CUDA extension cxrfast._cuda is not built or sees no GPU"
    if backend == "triton" and device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return "Triton runs on CPU tensors only in its interpreter (TRITON_INTERPRET=1)"
    return None


def _cuda_extension_usable() -> bool:
    if not _cuda_extension:
        try:
            from cxrfast import _cuda
        except ImportError:
            _cuda_extension.append(False)
        else:
            _cuda_extension.append(_cuda.device_count() > 0)
    return _cuda_extension[0]


@contextlib.contextmanager
def record_backends() -> Iterator[list[tuple[str, str]]]:
    """Collects (op name, backend) for every choice made inside the block, in order."""
    choices: list[tuple[str, str]] = []
    _recorders.append(choices)
    try:
        yield choices
    finally:  # by identity: another block's list may be equal to this one
        del _recorders[[c is choices for c in _recorders].index(True)]
