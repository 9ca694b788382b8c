"""Two gloo processes (as torchrun starts them) against one process with the same global batch:
the same losses at every step and the same final weights. SimCLR on a ConvNeXt with a linear
projection: no batch norm anywhere, whose statistics are per rank under DDP (SyncBatchNorm is
GPU-only), so the runs must agree up to float rounding. LARS, whose update is smooth in the
gradient: Adam divides by the gradient's own magnitude, which turns the rounding of near-zero
gradients into whole-lr differences. It exercises the loader's per-rank shards, gathered
negatives with gradients, and DDP's gradient averaging."""

from __future__ import annotations

import csv

import torch
import torch.multiprocessing as mp
from helpers.processes import free_port, join_as

from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.train import load_config, pretrain
from cxrfast.train.checkpoint import checkpoints

WORLD, GLOBAL_BATCH = 2, 8


def _config(data, out, batch_size):
    return load_config(None, (), method="simclr", data=str(data), out=str(out), backbone="convnext_atto",
                       image_size=32, batch_size=batch_size, epochs=1, workers=0, warmup_epochs=0, lr=0.5,
                       optimizer="lars", log_every=1,
                       method_options={"projection_layers": 1, "projection_dim": 16, "temperature": 0.2})


def _rank(rank: int, port: int, data: str, out: str) -> None:
    join_as(rank, WORLD, port)
    pretrain(_config(data, out, GLOBAL_BATCH // WORLD), progress=False)


def _losses(run) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_two_processes_equal_one_with_the_global_batch(tmp_path):
    data = tmp_path / "data"
    write_phantom_archive(data, 24, rows=64, progress=False)
    mp.spawn(_rank, args=(free_port(), str(data), str(tmp_path / "ddp")), nprocs=WORLD, join=True)
    torch.set_num_threads(1)
    single = pretrain(_config(data, tmp_path / "one", GLOBAL_BATCH), progress=False)
    assert single.steps == 3
    losses = _losses(tmp_path / "ddp")
    assert len(losses) == 3
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(_losses(tmp_path / "one")), rtol=1e-4, atol=1e-5)
    ddp = torch.load(checkpoints(tmp_path / "ddp")[-1], weights_only=False)["model"]
    one = torch.load(checkpoints(tmp_path / "one")[-1], weights_only=False)["model"]
    for name, value in one.items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    assert not torch.equal(one["projection.0.weight"], _initial_projection())  # it trained


def _initial_projection():
    torch.manual_seed(0)
    from cxrfast.methods import create_method
    from cxrfast.models import create_backbone

    return create_method("simclr", create_backbone("convnext_atto"), projection_layers=1,
                         projection_dim=16).projection[0].weight.detach()
