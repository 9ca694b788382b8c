"""NT-Xent with gathered negatives in 2 processes (gloo, CPU) against one process holding the
global batch: the ranks' mean loss is the global loss, and each rank's input gradients (summed
over every rank's loss by the gather's backward) are the world size times the global ones, which
DDP's averaging of parameter gradients turns back into the global gradient."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cxrfast.losses import NTXentLoss

WORLD, PER_RANK, DIM = 2, 5, 7


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * PER_RANK, DIM, generator=g), torch.randn(WORLD * PER_RANK, DIM, generator=g)


def _rank(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        out0, out1 = _views()
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        local0, local1 = out0[rows].clone().requires_grad_(), out1[rows].clone().requires_grad_()
        loss = NTXentLoss(0.3, gather_distributed=True)(local0, local1)
        loss.backward()
        torch.save({"loss": loss.detach(), "grad0": local0.grad, "grad1": local1.grad}, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gathered_negatives_equal_one_process_with_the_global_batch(tmp_path):
    mp.spawn(_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    out0, out1 = (v.requires_grad_() for v in _views())
    expected = NTXentLoss(0.3)(out0, out1)
    expected.backward()
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(WORLD)]
    torch.testing.assert_close(sum(r["loss"] for r in ranks) / WORLD, expected.detach())
    for rank, result in enumerate(ranks):
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        torch.testing.assert_close(result["grad0"], WORLD * out0.grad[rows])
        torch.testing.assert_close(result["grad1"], WORLD * out1.grad[rows])
    # Without the gather each rank sees only its own negatives: a different loss.
    local = NTXentLoss(0.3)(out0[:PER_RANK], out1[:PER_RANK])
    assert not torch.allclose(local, ranks[0]["loss"])
