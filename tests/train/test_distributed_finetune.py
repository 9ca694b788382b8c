"""Fine-tuning on two gloo processes against one process with the same global batch, in
frozen_then_full mode: the backbone out of the graph for the first epoch (DDP told to expect
unused parameters), in it for the second. Same losses per step, same validation log and
predictions, same final weights. ConvNeXt (layer norm: no per-rank batch statistics) and LARS
(smooth in the gradient), as in the pretraining test."""

from __future__ import annotations

import csv

import numpy as np
import torch
import torch.multiprocessing as mp
from helpers.processes import free_port, join_as

from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.synthetic import Finding, Findings
from cxrfast.eval import Predictions
from cxrfast.models.backbones import read_state_dict
from cxrfast.train import FinetuneConfig, finetune, load_config

WORLD, GLOBAL_BATCH = 2, 8


def _config(data, out, batch_size) -> FinetuneConfig:
    return load_config(None, (), kind=FinetuneConfig, data=str(data), out=str(out), backbone="convnext_atto",
                       image_size=32, batch_size=batch_size, epochs=2, workers=0, warmup_epochs=0, lr=0.5,
                       optimizer="lars", log_every=1, mode="frozen_then_full", frozen_epochs=1, backbone_lr=0.25,
                       findings=["Cardiomegaly", "Pleural Effusion"], patience=None,
                       split_fractions={"train": 0.5, "validate": 0.25, "test": 0.25})


def _rank(rank: int, port: int, data: str, out: str) -> None:
    join_as(rank, WORLD, port)
    finetune(_config(data, out, GLOBAL_BATCH // WORLD), progress=False)


def _column(path, name) -> list[float]:
    with open(path, newline="") as f:
        return [float(row[name]) for row in csv.DictReader(f)]


def test_two_processes_equal_one_with_the_global_batch(tmp_path, one_thread):  # as each rank
    data = tmp_path / "data"
    labels = write_phantom_archive(data, 40, rows=64, progress=False,
                                   findings=Findings({"Cardiomegaly": Finding(0.5), "Pleural Effusion": Finding(0.4)}))
    mp.spawn(_rank, args=(free_port(), str(labels), str(tmp_path / "ddp")), nprocs=WORLD, join=True)
    single = finetune(_config(labels, tmp_path / "one", GLOBAL_BATCH), progress=False)
    assert single.steps == 4  # 20 training images: 2 steps of 8 per epoch
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    np.testing.assert_allclose(_column(ddp / "metrics.csv", "loss"), _column(one / "metrics.csv", "loss"),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_column(ddp / "validation.csv", "loss"), _column(one / "validation.csv", "loss"),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(Predictions.read(ddp / "predictions.csv").scores,
                               Predictions.read(one / "predictions.csv").scores, rtol=1e-4, atol=1e-5)
    weights, reference = read_state_dict(ddp / "classifier.safetensors"), read_state_dict(one / "classifier.safetensors")
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    start = torch.load(sorted(one.glob("checkpoint-*.pt"))[0], weights_only=False)["model"]  # after epoch 1
    assert not torch.equal(start["model.stem.0.weight"], reference["stem.0.weight"])  # the backbone trained in DDP
