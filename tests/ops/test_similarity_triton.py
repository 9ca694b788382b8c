"""The fused similarity row reductions against a dense float64 reference that builds the whole logit
matrix: forward rows, grad_a with wdot / wsum, and grad_b. Without a GPU they run in Triton's
interpreter on CPU tensors (small shapes)."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are defined, so set before import

from cxrfast.triton import similarity  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SCALE = 2.0
# Bounds are relative to the sum of absolute terms behind each output. fp32: exact fp32 products. Half
# inputs: logits are exact products too, but on a GPU the weights enter the gradient dot in tf32 (2^-11).
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-3, torch.float16: 2e-3}


def kept_mask(n, m, offset):
    keep = torch.ones(n, m, dtype=torch.bool)
    if offset is not None:
        rows = torch.arange(n)
        inside = (rows + offset >= 0) & (rows + offset < m)
        keep[rows[inside], rows[inside] + offset] = False
    return keep


def reference(a, b, scale, bias, offset, mode, row_stat=None, g=None, col_stat=None, h=None):
    """Dense float64 version of every output, with the magnitude (sum of absolute terms) of each."""
    a, b = a.double().cpu(), b.double().cpu()
    dots = a @ b.T
    s = scale * dots + bias
    keep = kept_mask(a.shape[0], b.shape[0], offset)
    masked = s.masked_fill(~keep, float("-inf"))
    if mode == "lse":
        rows = torch.logsumexp(masked, 1)
        rows_mag = masked.abs().masked_fill(~keep, 0).amax(1) + 1
    else:
        softplus = (s.clamp(min=0) + torch.log1p(torch.exp(-s.abs()))).masked_fill(~keep, 0)
        rows = rows_mag = softplus.sum(1)
    out = {"rows": (rows, rows_mag), "col_lse": torch.logsumexp(masked, 0)}
    if g is None:
        return out
    phi = torch.exp(s - row_stat.double().cpu()[:, None]) if mode == "lse" else torch.sigmoid(s)
    w = g.double().cpu()[:, None] * phi
    if col_stat is not None:
        w = w + h.double().cpu()[None, :] * torch.exp(s - col_stat.double().cpu()[None, :])
    w = w.masked_fill(~keep, 0)
    out.update(grad_a=(w @ b, w.abs() @ b.abs()), wdot=((w * dots).sum(1), (w * dots).abs().sum(1)),
               wsum=(w.sum(1), w.abs().sum(1)), grad_b=(w.T @ a, w.abs().T @ a.abs()))
    return out


def check(name, got, expected, tol):
    value, magnitude = expected
    assert got.dtype == torch.float32 and got.shape == value.shape, name
    err = (got.double().cpu() - value).abs()
    bound = tol * magnitude + 1e-30
    worst = float((err / bound).max())
    assert worst <= 1, f"{name}: max error {float(err.max()):.3g}, {worst:.3g} times the bound"


def embeddings(n, m, d, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=gen) * d ** -0.5
    b = torch.randn(m, d, generator=gen) * d ** -0.5
    return a.to(dtype).to(DEVICE), b.to(dtype).to(DEVICE), gen


def run_all(a, b, scale, bias, offset, mode, with_col, tol, gen):
    """Forward, then both backward kernels with random upstream gradients, each against the reference."""
    n, m = a.shape[0], b.shape[0]
    ref = reference(a, b, scale, bias, offset, mode)
    check("rows", similarity.forward_rows(a, b, scale, bias, offset, mode), ref["rows"], tol)
    row_stat = ref["rows"][0].float().to(DEVICE)
    g = torch.randn(n, generator=gen).to(DEVICE)
    col_stat = ref["col_lse"].float().to(DEVICE) if with_col else None
    h = torch.randn(m, generator=gen).to(DEVICE) if with_col else None
    ref = reference(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h)
    grad_a, wdot, wsum = similarity.backward_a(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h)
    check("grad_a", grad_a, ref["grad_a"], tol)
    check("wdot", wdot, ref["wdot"], tol)
    check("wsum", wsum, ref["wsum"], tol)
    check("grad_b", similarity.backward_b(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h), ref["grad_b"],
          tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("mode,with_col,bias", [("lse", False, 0.0), ("lse", True, -1.5), ("softplus", False, -1.5),
                                                ("softplus", False, 0.0)],
                         ids=["lse", "lse-col", "softplus-bias", "softplus"])
@pytest.mark.parametrize("shape,offset", [  # (1, 1, 1) with offset 0 would exclude the only entry
    (shape, offset) for shape in [(1, 1, 1), (7, 5, 3), (33, 70, 17), (129, 40, 65), (40, 40, 24)]
    for offset in [None, 0, 3, -2] if shape[1] > 1 or offset != 0])
def test_matches_dense_reference(shape, offset, mode, with_col, bias, dtype):
    n, m, d = shape
    a, b, gen = embeddings(n, m, d, dtype)
    run_all(a, b, SCALE, bias, offset, mode, with_col, TOL[dtype], gen)


@pytest.mark.parametrize("shape", [(9, 20, 300), (3, 17, 1024)], ids=["D300", "D1024"])
def test_wide_embeddings(shape):
    # D above one backward slice: the gradient is split over several programs along D.
    a, b, gen = embeddings(*shape, torch.float32)
    run_all(a, b, SCALE, -1.5, 0, "lse", True, TOL[torch.float32], gen)


@pytest.mark.parametrize("mode,scale,bias,tol", [("lse", 100.0, 0.0, 1e-4), ("softplus", 100.0, -10.0, 1e-4),
                                                  ("softplus", 10.0, -10.0, 1e-5)],
                         ids=["clip", "softplus-sharp", "siglip-init"])
def test_contrastive_temperatures(mode, scale, bias, tol):
    # Unit-norm embeddings at CLIP / SigLIP temperatures: logits far beyond exp's fp32 range (a scale of 100
    # turns fp32 dot rounding into ~1e-5 logit error), and at SigLIP's initial scale 10, bias -10, softplus
    # terms near exp(-10) that a plain log(1 + t) would round to ~1e-4 relative error.
    a, b, gen = embeddings(40, 70, 32, torch.float32)
    a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    run_all(a, b, scale, bias, 0, mode, mode == "lse", tol, gen)


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # the interpreter's numpy exp
def test_columns_far_below_the_bias():
    # Every logit about -100 + bias: exp(bias - col_stat) overflows on the tile's padding rows, which must be
    # masked out of the gradient dot rather than multiplied by their zero embeddings (inf * 0 = NaN).
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(1, 16, generator=gen)
    a = torch.nn.functional.normalize(-v + 0.01 * torch.randn(3, 16, generator=gen), dim=1).to(DEVICE)
    b = torch.nn.functional.normalize(v + 0.01 * torch.randn(2, 16, generator=gen), dim=1).to(DEVICE)
    run_all(a, b, 100.0, 0.0, None, "lse", True, 1e-4, gen)


def test_float16():
    a, b, gen = embeddings(33, 70, 17, torch.float16)
    run_all(a, b, SCALE, -1.5, 3, "lse", True, TOL[torch.float16], gen)
    run_all(a, b, SCALE, -1.5, None, "softplus", False, TOL[torch.float16], gen)


def test_non_contiguous_inputs():
    a, b, _ = embeddings(40, 70, 24, torch.float32)
    a_view, b_view = a.T.contiguous().T, torch.stack([b, b], 2)[:, :, 0]
    assert not a_view.is_contiguous() and not b_view.is_contiguous()
    args = (SCALE, 0.0, 0, "lse")
    rows = similarity.forward_rows(a, b, *args)
    assert torch.equal(similarity.forward_rows(a_view, b_view, *args), rows)
    g = torch.ones(40, device=DEVICE)
    for got, want in zip(similarity.backward_a(a_view, b_view, *args, rows, g),
                         similarity.backward_a(a, b, *args, rows, g)):
        assert torch.equal(got, want)
    assert torch.equal(similarity.backward_b(a_view, b_view, *args, rows, g),
                       similarity.backward_b(a, b, *args, rows, g))


def test_rejects_bad_arguments():
    a, b, _ = embeddings(4, 5, 8, torch.float32)
    with pytest.raises(ValueError, match="mode"):
        similarity.forward_rows(a, b, SCALE, 0.0, None, "softmax")
    with pytest.raises(ValueError, match="share D"):
        similarity.forward_rows(a, b[:, :4], SCALE, 0.0, None, "lse")
    with pytest.raises(ValueError, match="share D"):
        similarity.forward_rows(a, b.half(), SCALE, 0.0, None, "lse")


@pytest.mark.parametrize("op", ["lse", "lse-columns", "softplus"])
@pytest.mark.parametrize("offset", [None, 0, 5])
def test_ops_through_triton_equal_their_reference(op, offset, monkeypatch):
    """The autograd glue in cxrfast.ops.similarity (columns as rows of the swapped product, the
    scale and bias gradients from the kernels' sums) with the Triton backend forced."""
    from cxrfast.ops.similarity import (similarity_lse, similarity_lse_reference, similarity_softplus,
                                        similarity_softplus_reference)

    gen = torch.Generator().manual_seed(1)
    a = torch.randn(45, 19, generator=gen).to(DEVICE).requires_grad_()
    b = torch.randn(45 + (offset or 0), 19, generator=gen).to(DEVICE).requires_grad_()
    scale = torch.tensor(1.3, device=DEVICE, requires_grad=True)
    bias = torch.tensor(-0.7, device=DEVICE, requires_grad=True)
    options = dict(bias=bias, exclude_diagonal=offset is not None, diagonal_offset=offset or 0)
    fused, reference = {"lse": (similarity_lse, similarity_lse_reference),
                        "lse-columns": (similarity_lse, similarity_lse_reference),
                        "softplus": (similarity_softplus, similarity_softplus_reference)}[op]
    if op == "lse-columns":
        options["columns"] = True
    outputs = []
    for function, backend in ((fused, "triton"), (reference, "reference")):
        monkeypatch.setenv("CXRFAST_BACKEND", backend)
        result = function(a, b, scale, **options)
        result = torch.cat(result) if isinstance(result, tuple) else result
        upstream = torch.linspace(-1, 1, result.numel(), device=DEVICE)
        outputs.append((result, *torch.autograd.grad(result, (a, b, scale, bias), upstream)))
    for got, expected in zip(*outputs):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
