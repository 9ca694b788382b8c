"""DINOLoss against the DINO paper's loop over crop pairs (cxrfast.losses.reference, as its
reference code computes it): loss, student gradient, centring and the centre's update, multi-crop layouts,
reductions, bf16, and across 2 gloo processes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cxrfast.losses import DINOLoss
from cxrfast.losses.reference import naive_center, naive_dino


def _outputs(crops, batch, dim, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    student = (3 * torch.randn(crops * batch, dim, generator=g)).to(dtype).requires_grad_()
    teacher = (3 * torch.randn(2 * batch, dim, generator=g)).to(dtype)
    return student, teacher


TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2**-7, atol=5e-3)}


@pytest.mark.parametrize("crops,batch,dim", [(2, 1, 1), (2, 7, 5), (4, 3, 129), (10, 5, 1000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_dino_equals_the_pairwise_loop(crops, batch, dim, dtype, reduction):
    student, teacher = _outputs(crops, batch, dim, dtype, crops + dim)
    loss = DINOLoss(dim, teacher_temp=0.07, student_temp=0.1, reduction=reduction)
    loss.center.copy_(torch.randn(1, dim, generator=torch.Generator().manual_seed(9)))
    center = loss.center.clone()
    ours = loss(student, teacher)
    naive = naive_dino(student, teacher, center, crops, 0.1, 0.07, reduction)
    torch.testing.assert_close(ours, naive, **TOLERANCE[dtype])
    upstream = torch.randn(ours.shape)
    got, = torch.autograd.grad(ours, student, upstream)
    expected, = torch.autograd.grad(naive, student, upstream)
    assert got.dtype == student.dtype
    scale = 1 if reduction == "mean" else batch
    torch.testing.assert_close(got.float(), expected.float(), rtol=TOLERANCE[dtype]["rtol"],
                               atol=TOLERANCE[dtype]["atol"] * scale)
    torch.testing.assert_close(loss.center, naive_center(center, teacher, 0.9))


def test_lists_of_crops_equal_the_concatenated_layout_and_eval_keeps_the_center():
    student, teacher = _outputs(6, 4, 11, torch.float32, 0)
    concatenated, listed = DINOLoss(11), DINOLoss(11)
    expected = concatenated(student, teacher)
    got = listed(list(student.chunk(6)), list(teacher.chunk(2)))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(listed.center, concatenated.center)
    listed.eval()
    before = listed.center.clone()
    listed(student, teacher)
    torch.testing.assert_close(listed.center, before)
    # A per-call teacher temperature (DINO warms it up).
    torch.testing.assert_close(listed(student, teacher, teacher_temp=0.07),
                               naive_dino(student, teacher, before, 6, 0.1, 0.07))


def test_hand_computed_value():
    # Equal teacher logits give uniform targets; equal student logits a uniform prediction: every
    # pair costs log K.
    loss = DINOLoss(4)
    assert loss(torch.zeros(6, 4), torch.ones(4, 4)).item() == pytest.approx(math.log(4), abs=1e-6)
    torch.testing.assert_close(loss.center, torch.full((1, 4), 0.1))


def test_bad_inputs():
    with pytest.raises(ValueError, match="B = 2"):
        DINOLoss(4)(torch.randn(5, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        DINOLoss(4)(torch.randn(6, 5), torch.randn(4, 5))
    with pytest.raises(ValueError, match="global crop"):
        DINOLoss(4, global_crops=3)(torch.randn(4, 4), torch.randn(6, 4))
    with pytest.raises(ValueError, match="positive"):
        DINOLoss(4, teacher_temp=0.0)


WORLD, PER_RANK, DIM = 2, 3, 6


def _rank(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        student, teacher = _outputs(4, WORLD * PER_RANK, DIM, torch.float32, 1)
        rows = [slice(c * WORLD * PER_RANK + rank * PER_RANK, c * WORLD * PER_RANK + (rank + 1) * PER_RANK)
                for c in range(4)]
        loss = DINOLoss(DIM)
        loss(torch.cat([student[r] for r in rows]).detach(), torch.cat([teacher[r] for r in rows[:2]]))
        torch.save(loss.center, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_center_is_the_mean_over_every_rank(tmp_path):
    mp.spawn(_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    student, teacher = _outputs(4, WORLD * PER_RANK, DIM, torch.float32, 1)
    loss = DINOLoss(DIM)
    loss(student, teacher)
    for rank in range(WORLD):
        torch.testing.assert_close(torch.load(tmp_path / f"{rank}.pt"), loss.center)
