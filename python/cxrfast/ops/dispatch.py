"""Backend choice: the fastest correct backend for a tensor's device, unless
CXRFAST_BACKEND=reference|cpu|triton|cuda forces one."""

from __future__ import annotations

import os

import torch

BACKENDS = ("reference", "cpu", "triton", "cuda")


def _cuda_extension_usable() -> bool:
    try:
        from cxrfast import _cuda
    except ImportError:
        return False
    return _cuda.device_count() > 0


def available_backends(device: torch.device, op_backends: tuple[str, ...]) -> list[str]:
    """Backends of an op that can run on `device` here, fastest first."""
    if device.type == "cuda":
        order = [b for b in ("cuda", "triton") if b in op_backends]
        usable = [b for b in order if b != "cuda" or _cuda_extension_usable()]
    else:
        usable = [b for b in ("cpu",) if b in op_backends]
        if os.environ.get("TRITON_INTERPRET") == "1" and "triton" in op_backends:
            usable.append("triton")  # Triton's interpreter runs kernels on CPU tensors
    return usable + ["reference"]


def select_backend(device: torch.device, op_backends: tuple[str, ...]) -> str:
    forced = os.environ.get("CXRFAST_BACKEND", "").strip().lower()
    choices = available_backends(device, op_backends)
    if not forced:
        return choices[0]
    if forced not in BACKENDS:
        raise ValueError(f"CXRFAST_BACKEND={forced!r} is not one of {BACKENDS}")
    if forced not in choices:
        raise RuntimeError(f"CXRFAST_BACKEND={forced} cannot run on {device}: available here {choices}")
    return forced
