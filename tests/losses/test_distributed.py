"""Losses with gathered negatives in 2 processes (gloo, CPU) against one process holding the
global batch: the ranks' mean loss is the global loss; each rank's input gradients (summed over
every rank's loss by the gather's backward) are the world size times the global ones, which DDP's
averaging of parameter gradients turns back into the global gradient; the ranks' mean gradient of
a loss's own parameters (logit scale, bias) is the global one."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cxrfast.losses import ClipLoss, MoCoLoss, NTXentLoss, SigLipLoss

WORLD, PER_RANK, DIM = 2, 5, 7
LOSSES = {"nt_xent": lambda gather: NTXentLoss(0.3, gather_distributed=gather),
          "clip": lambda gather: ClipLoss(init_logit_scale=5.0, gather_distributed=gather),
          "siglip": lambda gather: SigLipLoss(init_logit_scale=5.0, init_logit_bias=-2.0, gather_distributed=gather)}


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * PER_RANK, DIM, generator=g), torch.randn(WORLD * PER_RANK, DIM, generator=g)


def _rank(rank: int, name: str, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        first, second = _inputs()
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        local0, local1 = first[rows].clone().requires_grad_(), second[rows].clone().requires_grad_()
        criterion = LOSSES[name](True)
        loss = criterion(local0, local1)
        loss.backward()
        torch.save({"loss": loss.detach(), "grads": [local0.grad, local1.grad],
                    "own": [p.grad for p in criterion.parameters()]}, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", LOSSES)
def test_gathered_negatives_equal_one_process_with_the_global_batch(name, tmp_path):
    mp.spawn(_rank, args=(name, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    inputs = [v.requires_grad_() for v in _inputs()]
    criterion = LOSSES[name](False)
    expected = criterion(*inputs)
    expected.backward()
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(WORLD)]
    torch.testing.assert_close(sum(r["loss"] for r in ranks) / WORLD, expected.detach())
    for rank, result in enumerate(ranks):
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        for got, full in zip(result["grads"], inputs):
            torch.testing.assert_close(got, WORLD * full.grad[rows])
    for index, parameter in enumerate(criterion.parameters()):
        torch.testing.assert_close(sum(r["own"][index] for r in ranks) / WORLD, parameter.grad)
    # Without the gather each rank sees only its own negatives: a different loss.
    local = LOSSES[name](False)(inputs[0][:PER_RANK], inputs[1][:PER_RANK])
    assert not torch.allclose(local, ranks[0]["loss"])


def _moco_rank(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        query, key = _inputs()
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        loss = MoCoLoss(dim=DIM, queue_size=16, reduction="none")
        losses = [loss(query[rows], key[rows]) for _ in range(2)]  # the second step reads the first's keys
        torch.save({"losses": losses, "queue": loss.queue, "ptr": loss.queue_ptr}, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_moco_queues_take_every_ranks_keys(tmp_path):
    mp.spawn(_moco_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    query, key = _inputs()
    loss = MoCoLoss(dim=DIM, queue_size=16, reduction="none")
    expected = [loss(query, key) for _ in range(2)]
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"{rank}.pt")
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        for got, full in zip(result["losses"], expected):
            torch.testing.assert_close(got, full[rows])
        torch.testing.assert_close(result["queue"], loss.queue)
        assert int(result["ptr"]) == int(loss.queue_ptr)
