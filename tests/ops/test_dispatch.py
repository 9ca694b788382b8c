"""Backend dispatch across every op: a forced backend runs (and is the one recorded) or raises a
ConfigError naming why, never falling back; the default follows each op's declaration."""

from __future__ import annotations

import pytest
import torch
from helpers.sparse_conv_checks import conv_case

from cxrfast.errors import ConfigError
from cxrfast.ops import Op, Support, map_stored, map_stored_reference, record_backends
from cxrfast.ops.dispatch import FLOATING
from cxrfast.ops.similarity import (similarity_lse, similarity_lse_reference, similarity_softplus,
                                    similarity_softplus_reference)
from cxrfast.ops.sparse_conv import sparse_conv2d
from cxrfast.ops.sparse_conv_reference import sparse_conv2d_reference
from cxrfast.ops.sparse_tiles import gather_tiles, scatter_tiles


def _map_stored(dtype):
    g = torch.Generator().manual_seed(0)
    stored = torch.randint(-50, 300, (37, 5), generator=g).to(dtype)
    lut = torch.rand(200, generator=g)
    return [map_stored(stored, lut, -10)], [map_stored_reference(stored, lut, -10)]


def _similarity(fused, naive, dtype):
    g = torch.Generator().manual_seed(1)
    a, b = (torch.randn(n, 6, generator=g).to(dtype).requires_grad_() for n in (21, 30))
    options = dict(bias=-0.5, exclude_diagonal=True, diagonal_offset=4)
    results = []
    for function in (fused, naive):
        out = function(a, b, 2.0, **options)
        out = out[0] if isinstance(out, tuple) else out
        upstream = torch.linspace(-1, 1, out.numel())
        results.append([out, *torch.autograd.grad(out, (a, b), upstream)])
    return results


def _sparse_conv(conv, tile, dtype):
    """sparse_conv2d on tiles against the dense-masked reference; `conv` picks the op it reaches."""
    layout, dense, weight, bias, options = conv_case(2, 3, (4, 4), tile, 0.5, conv, seed=7)
    params = [t.to(dtype).requires_grad_() for t in (dense, weight, bias)]
    results = []
    for run in (lambda d, w, b: scatter_tiles(sparse_conv2d(gather_tiles(d, layout, tile), layout, w, b, **options),
                                              layout),
                lambda d, w, b: sparse_conv2d_reference(d, layout, w, b, **options)):
        out = run(*params)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(dtype)
        results.append([out, *torch.autograd.grad(out, params, upstream)])
    return results


# Each op: a case running it (with gradients where it has them) and its oracle on the same inputs.
# The gather-GEMM case is a 3x3 convolution on 2-wide tiles, the depthwise one ConvNeXt's 7x7 on 8-wide tiles.
OPS = {
    "map_stored": lambda dtype: _map_stored(dtype),
    "similarity_lse": lambda dtype: _similarity(similarity_lse, similarity_lse_reference, dtype),
    "similarity_softplus": lambda dtype: _similarity(similarity_softplus, similarity_softplus_reference, dtype),
    "sparse_gather_gemm": lambda dtype: _sparse_conv((3, 1, 1, 1, False), 2, dtype),
    "sparse_depthwise": lambda dtype: _sparse_conv((7, 1, 3, 1, True), 8, dtype),
}
NATURAL = {"map_stored": torch.int16}  # the others take float32
# What each op declares beyond reference and cpu.
ON_GPU = {"map_stored": ("cuda",), "similarity_lse": ("triton", "cuda"), "similarity_softplus": ("triton", "cuda"),
          "sparse_gather_gemm": ("triton", "cuda"), "sparse_depthwise": ()}


def _run(op, dtype=None):
    return OPS[op](dtype or NATURAL.get(op, torch.float32))


@pytest.mark.parametrize("op,backend", [(op, backend) for op in OPS for backend in ("reference", "cpu", "triton")
                                        if backend in ("reference", "cpu", *ON_GPU[op])])
def test_forced_backend_runs_and_is_recorded(op, backend, monkeypatch):
    if backend == "triton" and torch.cuda.is_available():
        pytest.skip("a GPU is here, so Triton's interpreter is off: tests/ops/test_*_triton.py run it on CUDA tensors")
    monkeypatch.setenv("CXRFAST_BACKEND", backend)
    with record_backends() as chosen:
        ours, oracle = _run(op)
    assert chosen and all(choice == (op, backend) for choice in chosen)
    for got, expected in zip(ours, oracle, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op,backend", [("map_stored", "triton"), ("sparse_depthwise", "triton"),
                                        ("sparse_depthwise", "cuda")])
def test_forcing_a_backend_the_op_lacks_raises(op, backend, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", backend)
    with pytest.raises(ConfigError, match=f"cannot run {op} here: {op} has no {backend} backend"):
        _run(op)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: forced cuda runs (tests/ops/test_*_cuda.py)")
@pytest.mark.parametrize("op", [op for op in OPS if "cuda" in ON_GPU[op]])
def test_forcing_cuda_on_cpu_tensors_raises(op, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "cuda")
    with pytest.raises(ConfigError, match=f"cannot run {op} here: its cuda backend takes cuda tensors, not cpu"):
        _run(op)


@pytest.mark.parametrize("op", [op for op in OPS if "triton" in ON_GPU[op]])
def test_forcing_triton_on_cpu_tensors_without_the_interpreter_raises(op, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("CXRFAST_BACKEND", "triton")
    with pytest.raises(ConfigError, match=r"Triton runs on CPU tensors only in its interpreter \(TRITON_INTERPRET=1\)"):
        _run(op)


@pytest.mark.parametrize("op,backend,dtype,supported", [
    ("similarity_lse", "triton", torch.float64, "bfloat16, float16, float32"),
    ("similarity_softplus", "triton", torch.float64, "bfloat16, float16, float32"),
    ("sparse_gather_gemm", "triton", torch.bfloat16, "float16, float32"),
    ("sparse_depthwise", "cpu", torch.bfloat16, "float32"),
])
def test_forcing_a_backend_on_a_dtype_it_lacks_raises(op, backend, dtype, supported, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the dtype is what fails, on a GPU machine too
    monkeypatch.setenv("CXRFAST_BACKEND", backend)
    with pytest.raises(ConfigError, match=f"its {backend} backend takes {supported}, not {str(dtype)[6:]}"):
        _run(op, dtype)


@pytest.mark.parametrize("op,dtype,expected", [
    ("map_stored", torch.uint8, "cpu"), ("similarity_lse", torch.float32, "cpu"),
    ("similarity_softplus", torch.float64, "cpu"), ("sparse_gather_gemm", torch.float64, "cpu"),
    ("sparse_depthwise", torch.float32, "cpu"),
    ("sparse_depthwise", torch.float64, "reference"),  # the C++ kernel is float32 only
])
def test_default_is_the_first_declared_backend_that_fits(op, dtype, expected, monkeypatch):
    monkeypatch.delenv("CXRFAST_BACKEND", raising=False)
    with record_backends() as chosen:
        ours, oracle = _run(op, dtype)
    assert chosen and all(choice == (op, expected) for choice in chosen)
    for got, expected_value in zip(ours, oracle, strict=True):
        torch.testing.assert_close(got, expected_value, rtol=1e-4, atol=1e-4)


def test_preference_order_and_availability(monkeypatch):
    monkeypatch.delenv("CXRFAST_BACKEND", raising=False)
    toy = Op("toy", {"reference": Support(FLOATING), "triton": Support(frozenset({torch.float32})),
                     "cpu": Support(FLOATING, frozenset({"cuda"}))})
    cpu = torch.device("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert toy.select(cpu, torch.float32) == "triton"
    assert toy.select(cpu, torch.float64) == "reference"  # triton lacks the dtype, cpu the device
    monkeypatch.delenv("TRITON_INTERPRET")
    assert toy.select(cpu, torch.float32) == "reference"
    # On a CUDA device (no tensor needed to choose): triton comes before the torch path.
    assert toy.select(torch.device("cuda"), torch.float32) == "triton"
    assert toy.select(torch.device("cuda"), torch.float64) == "cpu"


def test_records_nest_and_stop_outside(monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "reference")
    a = torch.randn(4, 3)
    with record_backends() as outer:
        similarity_lse(a, a)
        with record_backends() as inner:
            similarity_softplus(a, a)
        similarity_lse(a, a)
    similarity_lse(a, a)
    assert inner == [("similarity_softplus", "reference")]
    assert outer == [("similarity_lse", "reference"), ("similarity_softplus", "reference"),
                     ("similarity_lse", "reference")]


def test_choice_inside_a_compiled_graph_is_not_recorded_and_traces(monkeypatch):
    monkeypatch.delenv("CXRFAST_BACKEND", raising=False)
    a, b = torch.randn(9, 4), torch.randn(7, 4)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, y: similarity_lse(x, y, 2.0)[0], backend="aot_eager", fullgraph=True)
    with record_backends() as chosen:
        got = compiled(a, b)
    assert chosen == []
    torch.testing.assert_close(got, similarity_lse_reference(a, b, 2.0)[0])


def test_bad_values_and_declarations(monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", "gpu")
    with pytest.raises(ConfigError, match="CXRFAST_BACKEND='gpu' is not one of reference, cpu, triton, cuda"):
        _run("similarity_lse")
    with pytest.raises(ValueError, match="must include 'reference'"):
        Op("toy", {"cpu": Support(FLOATING)})
    with pytest.raises(ValueError, match="must include 'reference'"):
        Op("toy", {"reference": Support(FLOATING), "mps": Support(FLOATING)})
