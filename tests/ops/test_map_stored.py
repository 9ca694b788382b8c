"""map_stored against its PyTorch reference on every backend that can run here."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from cxrfast.errors import ConfigError
from cxrfast.ops import map_stored, map_stored_reference

DTYPES = [torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32]
SHAPES = [(1,), (7,), (129, 3), (5, 33, 17), (2500, 2048)]


def _case(dtype, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    info = torch.iinfo(dtype)
    low, high = max(info.min, -40000), min(info.max, 40000)
    stored = torch.randint(low, high + 1, shape, generator=g, dtype=torch.int64).to(dtype)
    first = int(low) + 7  # values below `first` and past the end exercise both clamps
    lut = torch.rand(min(high - low - 20, 65536), generator=g)
    return stored, lut, first


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_equals_reference(dtype, shape, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "cpu")
    stored, lut, first = _case(dtype, shape)
    torch.testing.assert_close(map_stored(stored, lut, first), map_stored_reference(stored, lut, first), rtol=0, atol=0)


def test_reference_by_hand():
    lut = torch.tensor([0.25, 0.5, 0.75])
    stored = torch.tensor([[-3, 10], [11, 12]], dtype=torch.int16)
    expected = torch.tensor([[0.25, 0.25], [0.5, 0.75]])
    torch.testing.assert_close(map_stored_reference(stored, lut, 10), expected)
    torch.testing.assert_close(map_stored(stored, lut, 10), expected)


def test_non_contiguous_input(monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "cpu")
    stored, lut, first = _case(torch.int16, (64, 48))
    view = stored.t()[::2]
    torch.testing.assert_close(map_stored(view, lut, first), map_stored_reference(view, lut, first), rtol=0, atol=0)


def test_matches_numpy_take():
    stored, lut, first = _case(torch.uint16, (31, 17))
    expected = np.take(lut.numpy(), np.clip(stored.numpy().astype(np.int64) - first, 0, lut.numel() - 1))
    np.testing.assert_array_equal(map_stored(stored, lut, first).numpy(), expected)


def test_rejects_bad_arguments(monkeypatch):
    with pytest.raises(TypeError, match="integer tensor"):
        map_stored(torch.zeros(3), torch.ones(2), 0)
    with pytest.raises(ValueError, match="non-empty"):
        map_stored(torch.zeros(3, dtype=torch.int16), torch.ones(0), 0)
    monkeypatch.setenv("CXRFAST_BACKEND", "cuda")
    with pytest.raises(ConfigError, match="cannot run map_stored here: its cuda backend takes cuda tensors, not cpu"):
        map_stored(torch.zeros(3, dtype=torch.int16), torch.ones(2), 0)
    monkeypatch.setenv("CXRFAST_BACKEND", "bogus")
    with pytest.raises(ConfigError, match="CXRFAST_BACKEND='bogus' is not one of"):
        map_stored(torch.zeros(3, dtype=torch.int16), torch.ones(2), 0)


def test_cuda_extension_is_built_where_nvcc_is():
    # CXRFAST_CUDA=AUTO builds cxrfast._cuda wherever a CUDA compiler is found, and it must
    # import on a machine without a GPU.
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("no CUDA compiler (nvcc) here, so cxrfast._cuda is not built")
    from cxrfast import _cuda

    assert _cuda.device_count() == torch.cuda.device_count()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_equals_reference(dtype, shape, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "cuda")
    stored, lut, first = _case(dtype, shape)
    got = map_stored(stored.cuda(), lut.cuda(), first)
    torch.testing.assert_close(got.cpu(), map_stored_reference(stored, lut, first), rtol=0, atol=0)
