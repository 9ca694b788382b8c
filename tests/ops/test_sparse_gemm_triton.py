"""The Triton implicit-GEMM sparse convolution against the dense-masked reference, forward and
every gradient, with dispatch's record showing the Triton backend ran. On CUDA tensors where a GPU
is, else in Triton's interpreter on CPU tensors (small shapes)."""

from __future__ import annotations

import pytest
import torch
from helpers.devices import TRITON_DEVICES
from helpers.sparse_conv_checks import check_gemm_path

from cxrfast.ops.dispatch import record_backends

pytestmark = pytest.mark.parametrize("device", TRITON_DEVICES)


@pytest.mark.parametrize("conv,tile", [((3, 1, 1, 1, False), 1), ((3, 2, 1, 1, False), 2), ((1, 1, 0, 1, False), 2),
                                       ((3, 1, 2, 2, False), 2), ((3, 2, 1, 1, False), 1)],
                         ids=["3x3-t1", "3x3s2-t2", "1x1-t2", "dilated-t2", "3x3s2-t1-to-cells"])
def test_triton_path_equals_reference(conv, tile, device, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "triton")
    with record_backends() as chosen:
        check_gemm_path(conv, tile, batch=2, channels=5, grid=(2, 4), ratio=0.5, device=device)
    assert chosen == [("sparse_gather_gemm", "triton")]


def test_float16(device, monkeypatch):
    # Half inputs, float32 sums: within a few half-precision steps of the float32 reference.
    monkeypatch.setenv("CXRFAST_BACKEND", "triton")
    with record_backends() as chosen:
        check_gemm_path((3, 1, 1, 1, False), 2, batch=2, channels=5, grid=(2, 4), ratio=0.5, device=device,
                        dtype=torch.float16, tolerance=2e-2)
    assert chosen == [("sparse_gather_gemm", "triton")]
