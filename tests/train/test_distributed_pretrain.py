"""Two gloo processes (as torchrun starts them) against one process with the same global batch:
the same losses at every step and the same final weights. SimCLR (a linear projection) and report
captioning on a ConvNeXt: no batch norm anywhere, whose statistics are per rank under DDP (SyncBatchNorm is
GPU-only), so the runs must agree up to float rounding. LARS, whose update is smooth in the
gradient: Adam divides by the gradient's own magnitude, which turns the rounding of near-zero
gradients into whole-lr differences. It exercises the loader's per-rank shards, gathered
negatives with gradients, DDP's gradient averaging, and the vocabulary each rank trains alike from
the reports while rank 0 alone saves it."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.multiprocessing as mp
from helpers.processes import free_port, join_as

from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.models import create_backbone
from cxrfast.train import load_config, pretrain
from cxrfast.train.checkpoint import checkpoints

WORLD, GLOBAL_BATCH = 2, 8
OPTIONS = {"simclr": {"projection_layers": 1, "projection_dim": 16, "temperature": 0.2},
           # Every report is longer than 8 tokens, so every caption is cut to the same length: each rank's
           # mean over its tokens, averaged by DDP, is then the mean over the global batch's tokens.
           "caption": {"width": 32, "heads": 4, "feedforward": 48, "vocab_size": 300, "max_length": 8,
                       "dropout": 0.0}}


def _config(method, data, out, batch_size):
    return load_config(None, (), method=method, data=str(data), out=str(out), backbone="convnext_atto",
                       image_size=32, batch_size=batch_size, epochs=1, workers=0, warmup_epochs=0, lr=0.5,
                       optimizer="lars", log_every=1, method_options=OPTIONS[method])


def _rank(rank: int, port: int, method: str, data: str, out: str) -> None:
    join_as(rank, WORLD, port)
    pretrain(_config(method, data, out, GLOBAL_BATCH // WORLD), progress=False)


def _losses(run) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("method", ["simclr", "caption"])
def test_two_processes_equal_one_with_the_global_batch(tmp_path, method, one_thread):  # as each rank
    data = tmp_path / "data"
    labels = write_phantom_archive(data, 24, rows=64, reports=method == "caption", progress=False)
    source = labels if method == "caption" else data
    mp.spawn(_rank, args=(free_port(), method, str(source), str(tmp_path / "ddp")), nprocs=WORLD, join=True)
    single = pretrain(_config(method, source, tmp_path / "one", GLOBAL_BATCH), progress=False)
    assert single.steps == 3
    losses = _losses(tmp_path / "ddp")
    assert len(losses) == 3
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(_losses(tmp_path / "one")), rtol=1e-4, atol=1e-5)
    ddp = torch.load(checkpoints(tmp_path / "ddp")[-1], weights_only=False)["model"]
    one = torch.load(checkpoints(tmp_path / "one")[-1], weights_only=False)["model"]
    for name, value in one.items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    torch.manual_seed(0)  # the run's seed, before its backbone is built
    assert not torch.equal(one["backbone.stem.0.weight"], create_backbone("convnext_atto").stem[0].weight)  # it trained
    if method == "caption":  # rank 0 saved the vocabulary both ranks trained
        assert (tmp_path / "ddp" / "tokenizer.json").read_text() == (tmp_path / "one" / "tokenizer.json").read_text()
