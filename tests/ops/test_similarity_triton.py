"""The fused similarity row reductions against a dense float64 reference that builds the whole logit
matrix: forward rows, grad_a with wdot / wsum, and grad_b. On CUDA tensors where a GPU is, else in
Triton's interpreter on CPU tensors (small shapes)."""

from __future__ import annotations

import pytest
import torch
from helpers.devices import TRITON_DEVICES
from helpers.similarity_checks import SCALE, TOL, check_ops_through, embeddings, run_all

from cxrfast.triton import similarity

pytestmark = pytest.mark.parametrize("device", TRITON_DEVICES)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("mode,with_col,bias", [("lse", False, 0.0), ("lse", True, -1.5), ("softplus", False, -1.5),
                                                ("softplus", False, 0.0)],
                         ids=["lse", "lse-col", "softplus-bias", "softplus"])
@pytest.mark.parametrize("shape,offset", [  # (1, 1, 1) with offset 0 would exclude the only entry
    (shape, offset) for shape in [(1, 1, 1), (7, 5, 3), (33, 70, 17), (129, 40, 65), (40, 40, 24)]
    for offset in [None, 0, 3, -2] if shape[1] > 1 or offset != 0])
def test_matches_dense_reference(shape, offset, mode, with_col, bias, dtype, device):
    n, m, d = shape
    a, b, gen = embeddings(n, m, d, dtype, device)
    run_all(similarity, a, b, SCALE, bias, offset, mode, with_col, TOL[dtype], gen)


@pytest.mark.parametrize("shape", [(9, 20, 300), (3, 17, 1024)], ids=["D300", "D1024"])
def test_wide_embeddings(shape, device):
    # D above one backward slice: the gradient is split over several programs along D.
    a, b, gen = embeddings(*shape, torch.float32, device)
    run_all(similarity, a, b, SCALE, -1.5, 0, "lse", True, TOL[torch.float32], gen)


@pytest.mark.parametrize("mode,scale,bias,tol", [("lse", 100.0, 0.0, 1e-4), ("softplus", 100.0, -10.0, 1e-4),
                                                  ("softplus", 10.0, -10.0, 1e-5)],
                         ids=["clip", "softplus-sharp", "siglip-init"])
def test_contrastive_temperatures(mode, scale, bias, tol, device):
    # Unit-norm embeddings at CLIP / SigLIP temperatures: logits far beyond exp's fp32 range (a scale of 100
    # turns fp32 dot rounding into ~1e-5 logit error), and at SigLIP's initial scale 10, bias -10, softplus
    # terms near exp(-10) that a plain log(1 + t) would round to ~1e-4 relative error.
    a, b, gen = embeddings(40, 70, 32, torch.float32, device)
    a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    run_all(similarity, a, b, scale, bias, 0, mode, mode == "lse", tol, gen)


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # the interpreter's numpy exp
def test_columns_far_below_the_bias(device):
    # Every logit about -100 + bias: exp(bias - col_stat) overflows on the tile's padding rows, which must be
    # masked out of the gradient dot rather than multiplied by their zero embeddings (inf * 0 = NaN).
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(1, 16, generator=gen)
    a = torch.nn.functional.normalize(-v + 0.01 * torch.randn(3, 16, generator=gen), dim=1).to(device)
    b = torch.nn.functional.normalize(v + 0.01 * torch.randn(2, 16, generator=gen), dim=1).to(device)
    run_all(similarity, a, b, 100.0, 0.0, None, "lse", True, 1e-4, gen)


def test_float16(device):
    a, b, gen = embeddings(33, 70, 17, torch.float16, device)
    run_all(similarity, a, b, SCALE, -1.5, 3, "lse", True, TOL[torch.float16], gen)
    run_all(similarity, a, b, SCALE, -1.5, None, "softplus", False, TOL[torch.float16], gen)


def test_non_contiguous_inputs(device):
    a, b, _ = embeddings(40, 70, 24, torch.float32, device)
    a_view, b_view = a.T.contiguous().T, torch.stack([b, b], 2)[:, :, 0]
    assert not a_view.is_contiguous() and not b_view.is_contiguous()
    args = (SCALE, 0.0, 0, "lse")
    rows = similarity.forward_rows(a, b, *args)
    assert torch.equal(similarity.forward_rows(a_view, b_view, *args), rows)
    g = torch.ones(40, device=device)
    for got, want in zip(similarity.backward_a(a_view, b_view, *args, rows, g),
                         similarity.backward_a(a, b, *args, rows, g)):
        assert torch.equal(got, want)
    assert torch.equal(similarity.backward_b(a_view, b_view, *args, rows, g),
                       similarity.backward_b(a, b, *args, rows, g))


def test_rejects_bad_arguments(device):
    a, b, _ = embeddings(4, 5, 8, torch.float32, device)
    with pytest.raises(ValueError, match="mode"):
        similarity.forward_rows(a, b, SCALE, 0.0, None, "softmax")
    with pytest.raises(ValueError, match="share D"):
        similarity.forward_rows(a, b[:, :4], SCALE, 0.0, None, "lse")
    with pytest.raises(ValueError, match="share D"):
        similarity.forward_rows(a, b.half(), SCALE, 0.0, None, "lse")


@pytest.mark.parametrize("op", ["lse", "lse-columns", "softplus"])
@pytest.mark.parametrize("offset", [None, 0, 5])
def test_ops_through_triton_equal_their_reference(op, offset, monkeypatch, device):
    check_ops_through("triton", op, offset, device, monkeypatch)
