"""The fused contrastive losses against the naive ones that materialise the logit matrix
(cxrfast.losses.reference, as lightly, open_clip and MoCo's reference code compute them), and against hand-computed
values: loss and every gradient, awkward sizes, non-contiguous inputs, reductions, fp32 and bf16."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import cxrfast.ops.similarity as similarity_module
from cxrfast.losses import ClipLoss, MoCoLoss, NTXentLoss, SigLipLoss
from cxrfast.losses.reference import naive_clip, naive_moco, naive_multi_positive, naive_nt_xent, naive_siglip
from cxrfast.ops.similarity import (similarity_lse, similarity_lse_reference, similarity_softplus,
                                    similarity_softplus_reference)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 16 rows: every size above exercises the online merge across blocks."""
    monkeypatch.setattr(similarity_module, "BLOCK_ELEMENTS", 16)


def _inputs(n, d, dtype, seed, transposed):
    g = torch.Generator().manual_seed(seed)
    if transposed:  # non-contiguous: a transposed view of a (D, N) tensor
        return torch.randn(d, n, generator=g).to(dtype).t().requires_grad_()
    return torch.randn(n, d, generator=g).to(dtype).requires_grad_()


TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 5e-3}
# bf16 results may round to neighbouring values when the GEMM's float32 sums differ in their last
# bits (thread scheduling): one bf16 step is 2^-7 relative at worst.
RELATIVE = {torch.float32: 1e-5, torch.bfloat16: 2**-7}
SIZES = [(1, 7), (7, 1), (129, 7), (1000, 129)]


def _assert_grads(ours, naive, inputs, dtype, terms=1):
    """`terms`: per-row losses summed, not averaged, into the result; each adds its rounding to
    every gradient element (with D = 1 the exact gradient is 0, and only that rounding is left)."""
    upstream = torch.randn(ours.shape)
    got = torch.autograd.grad(ours, inputs, upstream)
    expected = torch.autograd.grad(naive, inputs, upstream)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=RELATIVE[dtype], atol=TOLERANCE[dtype] * terms)


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nt_xent_equals_naive(n, d, dtype, reduction):
    out0, out1 = _inputs(n, d, dtype, 0, transposed=True), _inputs(n, d, dtype, 1, transposed=False)
    ours = NTXentLoss(temperature=0.2, reduction=reduction)(out0, out1)
    naive = naive_nt_xent(out0, out1, 0.2, reduction)
    torch.testing.assert_close(ours, naive, rtol=RELATIVE[dtype], atol=TOLERANCE[dtype])
    _assert_grads(ours, naive, (out0, out1), dtype, terms=1 if reduction == "mean" else 2 * n)


@pytest.mark.parametrize("views,images,d", [(2, 1, 3), (2, 7, 5), (4, 33, 16), (3, 129, 7)])
def test_multi_positive_equals_solo_learn(views, images, d):
    g = torch.Generator().manual_seed(views)
    indexes = torch.arange(images).repeat(views)[torch.randperm(views * images, generator=g)]
    z = torch.randn(views * images, d, generator=g).requires_grad_()
    ours = NTXentLoss(0.3)(z, indexes=indexes)
    naive = naive_multi_positive(z, indexes, 0.3)
    torch.testing.assert_close(ours, naive, rtol=1e-5, atol=1e-5)
    _assert_grads(ours, naive, (z,), torch.float32)
    # Two views in lightly's layout are the same loss.
    if views == 2:
        pairs = torch.arange(images).repeat(2)
        z2 = torch.randn(2 * images, d, generator=g)
        torch.testing.assert_close(NTXentLoss(0.3)(z2, indexes=pairs), NTXentLoss(0.3)(z2[:images], z2[images:]))


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("shuffled", [False, True])
def test_clip_equals_naive(n, d, dtype, reduction, shuffled):
    image = F.normalize(torch.randn(n, d), dim=1).to(dtype).requires_grad_()
    text = F.normalize(torch.randn(d, n), dim=0).t().to(dtype).requires_grad_()
    labels = torch.randperm(n, generator=torch.Generator().manual_seed(2)) if shuffled else torch.arange(n)
    loss = ClipLoss(init_logit_scale=10.0, reduction=reduction)
    ours = loss(image, text, labels)
    naive = naive_clip(image, text, loss.log_scale.exp(), labels, reduction)
    torch.testing.assert_close(ours, naive, rtol=RELATIVE[dtype], atol=TOLERANCE[dtype])
    _assert_grads(ours, naive, (image, text, loss.log_scale), dtype, terms=1 if reduction == "mean" else n)


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shuffled", [False, True])
def test_siglip_equals_open_clip(n, d, dtype, reduction, shuffled):
    image = F.normalize(torch.randn(d, n), dim=0).t().to(dtype).requires_grad_()
    text = F.normalize(torch.randn(n, d), dim=1).to(dtype).requires_grad_()
    labels = torch.randperm(n, generator=torch.Generator().manual_seed(3)) if shuffled else torch.arange(n)
    loss = SigLipLoss(reduction=reduction)
    ours = loss(image, text, labels)
    naive = naive_siglip(image, text, loss.log_scale.exp(), loss.logit_bias, labels, reduction)
    torch.testing.assert_close(ours, naive, rtol=RELATIVE[dtype], atol=TOLERANCE[dtype])
    _assert_grads(ours, naive, (image, text, loss.log_scale, loss.logit_bias), dtype,
                  terms=1 if reduction == "mean" else n)


def test_clip_bias_cancels_and_is_differentiable():
    image, text = torch.randn(9, 4), torch.randn(9, 4)
    scale, bias = torch.tensor(3.0, requires_grad=True), torch.tensor(-2.0, requires_grad=True)
    loss = ClipLoss(init_logit_bias=-2.0)
    ours = loss(image, text, logit_scale=scale, logit_bias=bias)
    naive = naive_clip(image, text, scale, torch.arange(9), bias=bias)
    torch.testing.assert_close(ours, naive)
    torch.testing.assert_close(ours, ClipLoss()(image, text, logit_scale=scale))
    for got, expected in zip(torch.autograd.grad(ours, (scale, bias)), torch.autograd.grad(naive, (scale, bias))):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert loss.logit_bias.requires_grad and isinstance(loss.logit_bias, torch.nn.Parameter)


def test_clip_logit_scale_is_clamped_and_may_be_passed():
    loss = ClipLoss(init_logit_scale=1000.0)
    assert loss.logit_scale.item() == pytest.approx(100.0)
    image, text = F.normalize(torch.randn(5, 3), dim=1), F.normalize(torch.randn(5, 3), dim=1)
    passed = torch.tensor(7.0, requires_grad=True)
    ours = loss(image, text, logit_scale=passed)
    naive = naive_clip(image, text, passed, torch.arange(5))
    torch.testing.assert_close(ours, naive)
    torch.testing.assert_close(torch.autograd.grad(ours, passed), torch.autograd.grad(naive, passed))


@pytest.mark.parametrize("n,d", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_moco_equals_naive_and_reads_the_queue_before_updating_it(n, d, dtype):
    loss = MoCoLoss(dim=d, temperature=0.2, queue_size=50)
    queue_before = loss.queue.clone()
    query, key = _inputs(n, d, dtype, 3, transposed=True), _inputs(n, d, dtype, 4, transposed=False)
    ours = loss(query, key)
    naive = naive_moco(query, key.detach(), queue_before, 0.2)
    torch.testing.assert_close(ours, naive, rtol=RELATIVE[dtype], atol=TOLERANCE[dtype])
    _assert_grads(ours, naive, (query,), dtype)
    # This batch's keys were enqueued after the loss read the queue (the newest last, wrapping).
    written = min(n, 50)
    rows = (torch.arange(n)[-written:]) % 50
    torch.testing.assert_close(loss.queue[rows], F.normalize(key.detach().float(), dim=1)[-written:].to(loss.queue.dtype))
    assert int(loss.queue_ptr) == n % 50


def test_moco_queue_is_saved_with_the_state_dict_and_v3_scaling():
    first = MoCoLoss(dim=4, queue_size=8)
    first(torch.randn(5, 4), torch.randn(5, 4))
    second = MoCoLoss(dim=4, queue_size=8, seed=1)
    second.load_state_dict(first.state_dict())
    query, key = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(first(query, key), second(query, key))
    v3 = MoCoLoss(dim=4, queue_size=8, temperature=0.3, scale_by_2t=True).eval()
    v2 = MoCoLoss(dim=4, queue_size=8, temperature=0.3).eval()
    torch.testing.assert_close(v3(query, key), 0.6 * v2(query, key))


def test_hand_computed_values():
    # One image, two views: each row's only other row is its positive, so the loss is 0.
    assert NTXentLoss()(torch.randn(1, 3), torch.randn(1, 3)).item() == pytest.approx(0.0, abs=1e-6)
    # Two orthogonal images, identical views, T = 0.5: every row sees logits (0, 2, 0) with the
    # positive at 2, so the loss is log(2 + e²) − 2.
    views = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert NTXentLoss(0.5)(views, views).item() == pytest.approx(math.log(2 + math.e ** 2) - 2, abs=1e-6)
    # CLIP on the same pairs, scale 2: both directions see logits (2, 0) → log(1 + e⁻²).
    clip = ClipLoss(init_logit_scale=2.0)(views, views)
    assert clip.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # SigLIP on them, scale 2, bias −1: per image one positive at logit 1 and one negative at −1,
    # each costing log(1 + e⁻¹); two of them per image.
    siglip = SigLipLoss(init_logit_scale=2.0, init_logit_bias=-1.0)(views, views)
    assert siglip.item() == pytest.approx(2 * math.log(1 + math.exp(-1)), abs=1e-6)


OPS = {"lse": (similarity_lse, similarity_lse_reference),
       "lse+columns": (lambda *args, **kw: similarity_lse(*args, columns=True, **kw),
                       lambda *args, **kw: similarity_lse_reference(*args, columns=True, **kw)),
       "softplus": (similarity_softplus, similarity_softplus_reference)}


def _outputs(result):
    return torch.cat(result) if isinstance(result, tuple) else result


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("exclude_diagonal,offset", [(False, 0), (True, 0), (True, 20), (True, -3)])
def test_similarity_ops_gradcheck_float64(op, exclude_diagonal, offset):
    fused, reference = OPS[op]
    a = torch.randn(37, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(23 if not exclude_diagonal else 37 + offset, 5, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-0.4, dtype=torch.float64, requires_grad=True)
    options = dict(exclude_diagonal=exclude_diagonal, diagonal_offset=offset)
    assert torch.autograd.gradcheck(lambda *args: _outputs(fused(*args[:3], bias=args[3], **options)),
                                    (a, b, scale, bias))
    torch.testing.assert_close(_outputs(fused(a, b, scale, bias=bias, **options)),
                               _outputs(reference(a, b, scale, bias=bias, **options)))


@pytest.mark.parametrize("name", ["ntxent", "clip", "siglip", "moco"])
def test_float32_sums_under_autocast(name):
    """bf16 autocast must not turn the fused GEMMs into bf16 ones: the loss equals the float32
    loss of the same inputs (without the guard all four fail)."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(300, 64, generator=g), torch.randn(300, 64, generator=g)
    loss = {"ntxent": NTXentLoss(0.1), "clip": ClipLoss(), "siglip": SigLipLoss(),
            "moco": MoCoLoss(dim=64, queue_size=256).eval()}[name]
    expected = loss(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(a, b)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="alike"):
        NTXentLoss()(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="appears only once"):
        NTXentLoss()(torch.randn(3, 4), indexes=torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="indices below"):
        ClipLoss()(torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="alike"):
        SigLipLoss()(torch.randn(3, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="positive"):
        SigLipLoss(init_logit_scale=0.0)
    with pytest.raises(ValueError, match="reduction"):
        NTXentLoss(reduction="max")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        MoCoLoss(dim=4)(torch.randn(3, 5), torch.randn(3, 5))
