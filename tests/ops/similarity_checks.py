"""Checks shared by the Triton and CUDA tests of the similarity row-reduction kernels: a dense
float64 reference building the whole logit matrix, and error bounds relative to the sum of the
absolute terms behind each output."""

from __future__ import annotations

import torch

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


def run_all(kernels, a, b, scale, bias, offset, mode, with_col, tol, gen):
    """Forward, then both backward kernels of a backend module (forward_rows, backward_a,
    backward_b) with random upstream gradients, each against the reference."""
    n, m = a.shape[0], b.shape[0]
    ref = reference(a, b, scale, bias, offset, mode)
    check("rows", kernels.forward_rows(a, b, scale, bias, offset, mode), ref["rows"], tol)
    row_stat = ref["rows"][0].float().to(DEVICE)
    g = torch.randn(n, generator=gen).to(DEVICE)
    col_stat = ref["col_lse"].float().to(DEVICE) if with_col else None
    h = torch.randn(m, generator=gen).to(DEVICE) if with_col else None
    ref = reference(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h)
    grad_a, wdot, wsum = kernels.backward_a(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h)
    check("grad_a", grad_a, ref["grad_a"], tol)
    check("wdot", wdot, ref["wdot"], tol)
    check("wsum", wsum, ref["wsum"], tol)
    check("grad_b", kernels.backward_b(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h), ref["grad_b"],
          tol)


def check_ops_through(backend, op, offset, monkeypatch):
    """The autograd glue in cxrfast.ops.similarity (columns as rows of the swapped product, the
    scale and bias gradients from the kernels' sums) with a backend forced."""
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
    for function, backend in ((fused, backend), (reference, "reference")):
        monkeypatch.setenv("CXRFAST_BACKEND", backend)
        result = function(a, b, scale, **options)
        result = torch.cat(result) if isinstance(result, tuple) else result
        upstream = torch.linspace(-1, 1, result.numel(), device=DEVICE)
        outputs.append((result, *torch.autograd.grad(result, (a, b, scale, bias), upstream)))
    for got, expected in zip(*outputs):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
