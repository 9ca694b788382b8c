"""The CUDA similarity row-reduction kernels against the dense float64 reference, and the losses'
autograd glue through them (GPU only)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from helpers.similarity_checks import SCALE, TOL, check_ops_through, embeddings, run_all


def test_bindings_refuse_bad_sizes_before_any_launch():
    # Checked in the binding, so this runs without a GPU wherever cxrfast._cuda is built.
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("no CUDA compiler (nvcc) here, so cxrfast._cuda is not built")
    from cxrfast import _cuda

    with pytest.raises(ValueError, match="sizes"):
        _cuda.similarity_forward_rows(0, 0, 0, -1, 4, 8, 1.0, 0.0, False, 0, 0, 0)
    with pytest.raises(ValueError, match="sizes"):
        _cuda.similarity_backward_b(0, 0, 0, 0, 0, 0, 0, 4, 4, 0, 1.0, 0.0, False, 0, 0, 0)
    with pytest.raises(ValueError, match="mode"):
        _cuda.similarity_forward_rows(0, 0, 0, 4, 4, 8, 1.0, 0.0, False, 0, 2, 0)
    with pytest.raises(ValueError, match="row_stat"):
        _cuda.similarity_backward_a(0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 8, 1.0, 0.0, False, 0, 0, 0)
    with pytest.raises(ValueError, match="together"):
        _cuda.similarity_backward_b(0, 0, 1, 1, 1, 0, 0, 4, 4, 8, 1.0, 0.0, False, 0, 0, 0)


@pytest.mark.gpu
@pytest.mark.parametrize("mode,with_col,bias", [("lse", False, 0.0), ("lse", True, -1.5), ("softplus", False, -1.5)])
@pytest.mark.parametrize("shape,offset", [((1, 1, 1), None), ((7, 5, 3), -2), ((33, 70, 17), 3),
                                          ((129, 40, 65), None), ((64, 64, 32), 0), ((130, 200, 300), 0)])
def test_cuda_kernels_match_dense_reference(shape, offset, mode, with_col, bias):
    from cxrfast.ops import similarity_cuda

    a, b, gen = embeddings(*shape, torch.float32, "cuda")
    run_all(similarity_cuda, a, b, SCALE, bias, offset, mode, with_col, TOL[torch.float32], gen)


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["lse", "lse-columns", "softplus"])
@pytest.mark.parametrize("offset", [None, 0, 5])
def test_ops_through_cuda_equal_their_reference(op, offset, monkeypatch):
    check_ops_through("cuda", op, offset, "cuda", monkeypatch)
