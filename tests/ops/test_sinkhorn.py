"""Sinkhorn codes kept as scale vectors and SwAV's swapped prediction against SwAV's own loop
(`sinkhorn_reference`, `swapped_prediction_reference`): codes on awkward sizes and wide score
ranges, the partition constraints after many iterations, the loss and its gradient with queues
and any code crops, bf16, and across 2 gloo processes equal to one holding both batches. The fused
backends the same way (Triton in its interpreter on CPU tensors where no GPU is, Triton and CUDA
on CUDA tensors where one is), their scales equal to the cpu backend's, half precision scores
(with a float32 queue) read as they are, and the memory they leave alone."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from cxrfast.errors import ConfigError
from cxrfast.losses import SwaVLoss
from cxrfast.ops import record_backends
from cxrfast.ops.sinkhorn import (sinkhorn, sinkhorn_reference, sinkhorn_scaling, swapped_prediction,
                                  swapped_prediction_reference)


def _cosine_scores(rows, prototypes, seed, dim=16):
    """Scores as SwAV's: unit embeddings against unit prototypes."""
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(rows, dim, generator=g), dim=1)
    return z @ F.normalize(torch.randn(prototypes, dim, generator=g), dim=1).t()


@pytest.mark.parametrize("samples,prototypes", [(1, 1), (1, 7), (5, 1), (13, 3000), (300, 17), (64, 64)])
@pytest.mark.parametrize("iterations", [1, 3])
def test_codes_equal_swav_loop(samples, prototypes, iterations):
    scores = _cosine_scores(samples, prototypes, samples + prototypes)
    with record_backends() as chosen:
        codes = sinkhorn(scores, 0.05, iterations)
    assert chosen == [("sinkhorn", "cpu")]
    torch.testing.assert_close(codes, sinkhorn_reference(scores, 0.05, iterations), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(codes.sum(1), torch.ones(samples))  # the last scaling is the samples'


def test_scores_of_any_range_give_finite_codes():
    # exp(s/ε) overflows float32 beyond s/ε ≈ 88; each prototype's maximum is subtracted first.
    scores = 8 * torch.randn(40, 30, generator=torch.Generator().manual_seed(3))
    assert not torch.isfinite(sinkhorn_reference(scores, 0.05)).all()
    codes = sinkhorn(scores, 0.05)
    expected = sinkhorn_reference(scores.double(), 0.05).float()
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("samples,prototypes", [(60, 20), (20, 60), (17, 5)])
def test_the_partition_constraints_hold_as_iterations_grow(samples, prototypes):
    scores = _cosine_scores(samples, prototypes, 0)
    codes = sinkhorn(scores, 0.1, 500)
    torch.testing.assert_close(codes.sum(1), torch.ones(samples))
    torch.testing.assert_close(codes.sum(0), torch.full((prototypes,), samples / prototypes), rtol=1e-4, atol=1e-5)


def test_equal_scores_give_uniform_codes_and_blocks_equal_the_whole():
    torch.testing.assert_close(sinkhorn(torch.zeros(4, 8)), torch.full((4, 8), 1 / 8))
    queue, batch = _cosine_scores(9, 11, 1), _cosine_scores(6, 11, 2)
    whole = sinkhorn_scaling(torch.cat([queue, batch]))
    parts = sinkhorn_scaling([queue, batch])
    for a, b in zip(whole[:4], parts[:4]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(parts.codes(batch, 9), sinkhorn_reference(torch.cat([queue, batch]))[9:])


def _crops(crops, batch, prototypes, seed, dtype=torch.float32):
    scores = _cosine_scores(crops * batch, prototypes, seed).reshape(crops, batch, prototypes)
    return scores.to(dtype).requires_grad_()


@pytest.mark.parametrize("crops,batch,prototypes,assign", [(2, 1, 1, (0, 1)), (2, 5, 3, (1,)), (3, 4, 7, (2, 0)),
                                                           (8, 9, 3000, (0, 1)), (4, 600, 5, (0, 1))])
@pytest.mark.parametrize("queued", [False, True])
def test_swapped_prediction_equals_swav_loop(crops, batch, prototypes, assign, queued):
    scores = _crops(crops, batch, prototypes, crops + prototypes)
    queue = [_cosine_scores(3 + a, prototypes, 50 + a) for a in range(len(assign))] if queued else None
    if queued:
        queue[0] = None  # one code crop without its queue: SwAV's before the queue is full
    with record_backends() as chosen:
        ours = swapped_prediction(scores, assign, 0.1, queue=queue)
    assert chosen[-1] == ("swapped_prediction", "cpu")
    expected = swapped_prediction_reference(scores, assign, 0.1, queue=queue)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.rand(batch, generator=torch.Generator().manual_seed(1))
    got, = torch.autograd.grad(ours, scores, upstream)
    want, = torch.autograd.grad(expected, scores, upstream)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_bfloat16_scores_and_the_module_layouts():
    scores = _crops(6, 8, 50, 4, torch.bfloat16)
    ours = swapped_prediction(scores)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, swapped_prediction_reference(scores), rtol=1e-5, atol=1e-5)
    grad, = torch.autograd.grad(ours.sum(), scores)
    assert grad.dtype == torch.bfloat16
    loss = SwaVLoss()
    torch.testing.assert_close(loss(scores), ours.mean())
    torch.testing.assert_close(loss(list(scores)), ours.mean())
    torch.testing.assert_close(SwaVLoss(reduction="none")(scores), ours)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least two crops"):
        swapped_prediction(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="distinct crops"):
        swapped_prediction(torch.zeros(2, 3, 4), (0, 2))
    with pytest.raises(ValueError, match="one queue entry"):
        swapped_prediction(torch.zeros(2, 3, 4), (0, 1), queue=[None])
    with pytest.raises(ValueError, match="at least one iteration"):
        sinkhorn(torch.zeros(3, 4), iterations=0)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        sinkhorn_scaling([torch.zeros(3, 4), torch.zeros(2, 5)])
    with pytest.raises(ValueError, match=r"\(V, B, K\)"):
        SwaVLoss()(torch.zeros(6, 4))


WORLD, PER_RANK, PROTOTYPES, QUEUE = 2, 5, 13, 4


def _world_inputs():
    scores = _crops(3, WORLD * PER_RANK, PROTOTYPES, 7).detach()
    queues = [_cosine_scores(WORLD * QUEUE, PROTOTYPES, 20 + a) for a in range(2)]
    return scores, queues


def _rank(rank: int, init_file: str, out_dir: str, backend: str) -> None:
    os.environ["CXRFAST_BACKEND"] = backend
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        scores, queues = _world_inputs()
        mine = scores[:, rank * PER_RANK:(rank + 1) * PER_RANK].clone().requires_grad_()
        queue = [q[rank * QUEUE:(rank + 1) * QUEUE] for q in queues]
        losses = swapped_prediction(mine, (0, 1), queue=queue)
        grad, = torch.autograd.grad(losses.sum(), mine)
        codes = sinkhorn(scores[0, rank * PER_RANK:(rank + 1) * PER_RANK])
        torch.save((losses.detach(), grad, codes), f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("backend", ["cpu", pytest.param("triton", marks=pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="Triton's interpreter is off: the ranks hold CPU tensors"))])
def test_two_processes_equal_one(tmp_path, backend):
    # The fused passes take the sums over ranks between them as the cpu backend does.
    mp.spawn(_rank, args=(str(tmp_path / "init"), str(tmp_path), backend), nprocs=WORLD, join=True)
    scores, queues = _world_inputs()
    scores.requires_grad_()
    # One process holding both ranks' queues and batches: Sinkhorn does not depend on the
    # samples' order, so each rank's may sit anywhere among them.
    expected = swapped_prediction(scores, (0, 1), queue=queues)
    want, = torch.autograd.grad(expected.sum(), scores)
    for rank in range(WORLD):
        losses, grad, codes = torch.load(tmp_path / f"{rank}.pt")
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        torch.testing.assert_close(codes, sinkhorn(scores[0].detach())[rows])
        torch.testing.assert_close(losses, expected[rows].detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, want[:, rows], rtol=1e-5, atol=1e-6)


# The fused backends, each on the device it runs on here: Triton in its interpreter on CPU tensors
# (tests/conftest.py turns it on where no GPU is), Triton and CUDA on a GPU.
FUSED = [pytest.param("triton", "cpu", id="triton-interpreter", marks=pytest.mark.skipif(
             os.environ.get("TRITON_INTERPRET") != "1", reason="Triton's interpreter is off (a GPU is here)")),
         pytest.param("triton", "cuda", id="triton-cuda", marks=pytest.mark.gpu),
         pytest.param("cuda", "cuda", id="cuda", marks=pytest.mark.gpu)]
# Half precision gradients are rounded to their dtype (truncated in Triton's interpreter): one step.
GRADIENT_TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float16: dict(rtol=2 ** -10, atol=2 ** -23),
                      torch.bfloat16: dict(rtol=2 ** -7, atol=1e-9)}


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("samples,prototypes", [(1, 1), (1, 7), (5, 1), (13, 300), (600, 5), (3, 1100)])
def test_fused_codes_and_scales(samples, prototypes, backend, device, monkeypatch):
    # 600 samples and 1100 prototypes: the passes' sums split over several programs.
    scores = _cosine_scores(samples, prototypes, samples + prototypes).to(device)
    monkeypatch.setenv("CXRFAST_BACKEND", "cpu")
    expected = sinkhorn_scaling(scores)
    monkeypatch.setenv("CXRFAST_BACKEND", backend)
    with record_backends() as chosen:
        codes = sinkhorn(scores)
    assert chosen == [("sinkhorn", backend)]
    torch.testing.assert_close(codes, sinkhorn_reference(scores), rtol=1e-5, atol=1e-7)
    for got, want in zip(sinkhorn_scaling(scores)[:4], expected[:4]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend,device", FUSED)
def test_fused_codes_of_wide_scores_and_a_queue(backend, device, monkeypatch):
    monkeypatch.setenv("CXRFAST_BACKEND", backend)
    scores = (8 * torch.randn(40, 30, generator=torch.Generator().manual_seed(3))).to(device)
    codes = sinkhorn(scores, 0.05)
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes, sinkhorn_reference(scores.double(), 0.05).float(), rtol=1e-4, atol=1e-6)
    queue, batch = _cosine_scores(9, 11, 1).to(device), _cosine_scores(6, 11, 2).to(device)
    parts = sinkhorn_scaling([queue, batch])
    torch.testing.assert_close(parts.codes(batch, 9), sinkhorn_reference(torch.cat([queue, batch]))[9:])


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("crops,batch,prototypes,assign", [(2, 1, 1, (0, 1)), (2, 5, 3, (1,)), (3, 4, 7, (2, 0)),
                                                           (8, 9, 300, (0, 1)), (5, 3, 130, (4,))])
@pytest.mark.parametrize("queued", [False, True])
def test_fused_swapped_prediction_equals_swav_loop(crops, batch, prototypes, assign, queued, backend, device,
                                                   monkeypatch):
    scores = _crops(crops, batch, prototypes, crops + prototypes).detach().to(device).requires_grad_()
    queue = [_cosine_scores(3 + a, prototypes, 50 + a).to(device) for a in range(len(assign))] if queued else None
    if queued:
        queue[0] = None
    _check_fused_loss(scores, assign, queue, backend, monkeypatch)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_fused_half_scores_with_a_float32_queue(dtype, backend, device, monkeypatch):
    # The kernels read half scores as they are; the reference computes from the same values in float32.
    scores = _crops(6, 8, 50, 4, dtype).detach().to(device).requires_grad_()
    queue = [_cosine_scores(5, 50, 9).to(device), None]
    _check_fused_loss(scores, (0, 1), queue, backend, monkeypatch)


def _check_fused_loss(scores, assign, queue, backend, monkeypatch):
    upstream = torch.rand(scores.shape[1], generator=torch.Generator().manual_seed(1)).to(scores.device)
    monkeypatch.setenv("CXRFAST_BACKEND", backend)
    with record_backends() as chosen:
        ours = swapped_prediction(scores, assign, 0.1, queue=queue)
    assert chosen == [("swapped_prediction", backend)] and ours.dtype == torch.float32
    got, = torch.autograd.grad(ours, scores, upstream)
    monkeypatch.setenv("CXRFAST_BACKEND", "reference")
    expected = swapped_prediction(scores, assign, 0.1, queue=queue)
    want, = torch.autograd.grad(expected, scores, upstream)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert got.dtype == scores.dtype
    torch.testing.assert_close(got, want, **GRADIENT_TOLERANCE[scores.dtype])


def test_fused_backends_leave_float64_and_cpu_tensors_alone(monkeypatch):
    scores = _crops(2, 3, 4, 0, torch.float64)
    for backend, refusal in (("triton", "not float64"), ("cuda", "takes cuda tensors, not cpu")):
        monkeypatch.setenv("CXRFAST_BACKEND", backend)
        with pytest.raises(ConfigError, match=refusal):
            swapped_prediction(scores)
    monkeypatch.delenv("CXRFAST_BACKEND")
    with record_backends() as chosen:  # the fastest on CPU tensors, even with Triton's interpreter on
        swapped_prediction(scores.float())
    assert chosen == [("swapped_prediction", "cpu")]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_fused_memory_is_the_scores_and_their_gradient(backend, monkeypatch):
    # Scores (2, 1024, 8192) float32 are 64 MiB: besides the gradient, the fused backends keep
    # vectors and partial sums of at most 32 × K, far below one N × K array (32 MiB here).
    monkeypatch.setenv("CXRFAST_BACKEND", backend)
    scores = _crops(2, 1024, 8192, 0).detach().cuda().requires_grad_()
    queue = [_cosine_scores(512, 8192, 1).cuda(), None]
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    losses = swapped_prediction(scores, queue=queue)
    assert torch.cuda.max_memory_allocated() - base < 4 << 20
    losses.sum().backward()
    assert torch.cuda.max_memory_allocated() - base < scores.nbytes + (4 << 20)


def test_cuda_bindings_refuse_bad_sizes_before_any_launch():
    # Checked in the binding, so this runs without a GPU wherever cxrfast._cuda is built.
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("no CUDA compiler (nvcc) here, so cxrfast._cuda is not built")
    from cxrfast import _cuda

    with pytest.raises(ValueError, match="dtype"):
        _cuda.sinkhorn_sample_shift(0, 3, 0, 0, 4, 8, 1, 0)
    with pytest.raises(ValueError, match="sizes"):
        _cuda.sinkhorn_sample_totals(0, 0, 0, 0, 0, 1.0, 0, 4, 0, 1, 0)
    with pytest.raises(ValueError, match="chunks"):
        _cuda.sinkhorn_prototype_totals(0, 0, 0, 0, 0, 1.0, 0, 4, 8, 5, 0)
    with pytest.raises(ValueError, match="sizes"):
        _cuda.swapped_code_dots(0, 0, 2, 0, 0, 0, 0, 1.0, 0, 2, 4, 8, 0)
    with pytest.raises(ValueError, match="sizes"):
        _cuda.swapped_gradient(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 4, 8, 3, 1.0, 1.0, 0)
