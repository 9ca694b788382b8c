"""map_stored: stored pixel values -> lut[value - first] (the DICOM stage tables of
`cxrfast.io`), on CPU tensors (C++) or CUDA tensors (CUDA kernel). Not differentiable: its
inputs are integers."""

from __future__ import annotations

import torch

from cxrfast.ops.dispatch import Op, Support

_INTEGER = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.uint16, torch.uint32})
OP = Op("map_stored", {"reference": Support(_INTEGER), "cpu": Support(_INTEGER, frozenset({"cpu"})),
                       "cuda": Support(_INTEGER, frozenset({"cuda"}))})


def map_stored_reference(stored: torch.Tensor, lut: torch.Tensor, first: int) -> torch.Tensor:
    """Values below `first` take lut[0], past the end the last entry."""
    index = (stored.to(torch.int64) - first).clamp_(0, lut.numel() - 1)
    return lut.to(torch.float32)[index]


def _check(stored: torch.Tensor, lut: torch.Tensor) -> None:
    if stored.dtype not in _INTEGER:
        raise TypeError(f"stored values must be an 8/16/32-bit integer tensor, not {stored.dtype}")
    if lut.ndim != 1 or lut.numel() == 0:
        raise ValueError("lut must be a non-empty 1-d tensor")
    if lut.device != stored.device:
        raise ValueError(f"lut is on {lut.device} but stored values are on {stored.device}")


def map_stored(stored: torch.Tensor, lut: torch.Tensor, first: int) -> torch.Tensor:
    _check(stored, lut)
    backend = OP.select(stored.device, stored.dtype)
    if backend == "reference":
        return map_stored_reference(stored, lut, first)
    source = stored.contiguous()
    table = lut.to(torch.float32).contiguous()
    out = torch.empty(source.shape, dtype=torch.float32, device=source.device)
    bits = source.element_size() * 8
    signed = source.dtype.is_signed
    if backend == "cpu":
        from cxrfast import _C

        fmt = _C.PixelFormat(bits_allocated=bits, bits_stored=bits, is_signed=signed)
        _C.map_stored(source.view(-1).view(torch.uint8).numpy(), 0, out.view(-1).numpy(), source.numel(), fmt,
                      table.numpy(), int(first))
        return out
    from cxrfast import _cuda

    _cuda.map_stored(source.data_ptr(), bits, signed, source.numel(), table.data_ptr(), int(first), table.numel(),
                     out.data_ptr(), torch.cuda.current_stream(source.device).cuda_stream)
    return out
