"""Checks shared by the Triton and CUDA tests of the similarity row-reduction kernels: every
kernel output against the dense float64 references of cxrfast.ops.similarity, with error bounds
relative to the sum of the absolute terms behind each output."""

from __future__ import annotations

import torch

from cxrfast.ops.similarity import (similarity_logits_reference, similarity_lse, similarity_lse_reference,
                                    similarity_softplus, similarity_softplus_reference, similarity_weights_reference)

SCALE = 2.0
# Bounds are relative to the sum of absolute terms behind each output. fp32: exact fp32 products. Half
# inputs: logits are exact products too, but on a GPU the weights enter the gradient dot in tf32 (2^-11).
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-3, torch.float16: 2e-3}


def _double(x):
    return None if x is None else x.double().cpu()


def reference(a, b, scale, bias, offset, mode, row_stat=None, g=None, col_stat=None, h=None):
    """Every kernel output in float64 from the whole logit matrix, each with its magnitude (the sum
    of the absolute terms behind it). `offset` None keeps every entry, as the kernels take it."""
    a, b = _double(a), _double(b)
    options = dict(bias=bias, exclude_diagonal=offset is not None, diagonal_offset=offset or 0)
    logits = similarity_logits_reference(a, b, scale, **options)
    if mode == "lse":
        rows = similarity_lse_reference(a, b, scale, **options)[0]
        rows_mag = logits.masked_fill(logits == float("-inf"), 0).abs().amax(1) + 1
    else:
        rows = rows_mag = similarity_softplus_reference(a, b, scale, **options)
    out = {"rows": (rows, rows_mag), "col_lse": torch.logsumexp(logits, 0)}
    if g is None:
        return out
    w = similarity_weights_reference(logits, mode, _double(row_stat), _double(g), _double(col_stat), _double(h))
    dots = a @ b.T
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


def embeddings(n, m, d, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=gen) * d ** -0.5
    b = torch.randn(m, d, generator=gen) * d ** -0.5
    return a.to(dtype).to(device), b.to(dtype).to(device), gen


def run_all(kernels, a, b, scale, bias, offset, mode, with_col, tol, gen):
    """Forward, then both backward kernels of a backend module (forward_rows, backward_a,
    backward_b) with random upstream gradients, each against the reference."""
    n, m, device = a.shape[0], b.shape[0], a.device
    ref = reference(a, b, scale, bias, offset, mode)
    check("rows", kernels.forward_rows(a, b, scale, bias, offset, mode), ref["rows"], tol)
    row_stat = ref["rows"][0].float().to(device)
    g = torch.randn(n, generator=gen).to(device)
    col_stat = ref["col_lse"].float().to(device) if with_col else None
    h = torch.randn(m, generator=gen).to(device) if with_col else None
    ref = reference(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h)
    grad_a, wdot, wsum = kernels.backward_a(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h)
    check("grad_a", grad_a, ref["grad_a"], tol)
    check("wdot", wdot, ref["wdot"], tol)
    check("wsum", wsum, ref["wsum"], tol)
    check("grad_b", kernels.backward_b(a, b, scale, bias, offset, mode, row_stat, g, col_stat, h), ref["grad_b"],
          tol)


def check_ops_through(backend, op, offset, device, monkeypatch):
    """The autograd glue in cxrfast.ops.similarity (columns as rows of the swapped product, the
    scale and bias gradients from the kernels' sums) with a backend forced."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(45, 19, generator=gen).to(device).requires_grad_()
    b = torch.randn(45 + (offset or 0), 19, generator=gen).to(device).requires_grad_()
    scale = torch.tensor(1.3, device=device, requires_grad=True)
    bias = torch.tensor(-0.7, device=device, requires_grad=True)
    options = dict(bias=bias, exclude_diagonal=offset is not None, diagonal_offset=offset or 0)
    fused, naive = {"lse": (similarity_lse, similarity_lse_reference),
                    "lse-columns": (similarity_lse, similarity_lse_reference),
                    "softplus": (similarity_softplus, similarity_softplus_reference)}[op]
    if op == "lse-columns":
        options["columns"] = True
    outputs = []
    for function, forced in ((fused, backend), (naive, "reference")):
        monkeypatch.setenv("CXRFAST_BACKEND", forced)
        result = function(a, b, scale, **options)
        result = torch.cat(result) if isinstance(result, tuple) else result
        upstream = torch.linspace(-1, 1, result.numel(), device=device)
        outputs.append((result, *torch.autograd.grad(result, (a, b, scale, bias), upstream)))
    (*values, grad_scale, grad_bias), (*expected_values, _, _) = outputs
    for got, expected in zip(values, expected_values):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The scale's and the bias's gradients each sum N·M terms of either sign: their float32
    # rounding is a few ulps of the terms' absolute sum, far above 1e-5 of the (cancelled) result.
    truth, magnitude = _scalar_gradients_float64(a, b, scale, op, options, upstream)
    for got, want, size in zip((grad_scale, grad_bias), truth, magnitude):
        assert abs(got.item() - want) <= 1e-6 * size + 1e-7, (got.item(), want, size)


def _scalar_gradients_float64(a, b, scale, op, options, upstream):
    """(d/dscale, d/dbias) of upstream · result in float64, and the absolute sum of the terms
    each adds up: Σ|w_ij · dot_ij| and Σ|w_ij|, w the upstream gradient of the logits."""
    a, b = _double(a.detach()), _double(b.detach())
    options = {**options, "bias": options["bias"].detach().double().cpu()}
    columns = options.pop("columns", False)
    logits = similarity_logits_reference(a, b, scale.detach().double().cpu(), **options).requires_grad_()
    if op == "softplus":
        result = torch.nn.functional.softplus(logits).sum(1)
    else:
        result = torch.cat([torch.logsumexp(logits, 1), *([torch.logsumexp(logits, 0)] if columns else [])])
    weights, = torch.autograd.grad(result, logits, _double(upstream))
    weights = weights.nan_to_num(0.0)  # left-out (-inf) entries
    dots = a @ b.T
    return ((weights * dots).sum().item(), weights.sum().item()), \
        ((weights * dots).abs().sum().item(), weights.abs().sum().item())
