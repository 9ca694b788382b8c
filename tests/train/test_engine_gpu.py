"""The pretraining engine on a CUDA GPU: inside a one-process NCCL group (as torchrun starts a
single-GPU run) it trains as it does with no group, and fp16 runs with the gradient scaler,
close to fp32, saving the scaler's state in its checkpoints."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist

from cxrfast.train import load_config, pretrain

pytestmark = pytest.mark.gpu


@pytest.fixture
def deterministic():
    """cuDNN's default algorithms may sum in a different order from run to run; two runs compared
    step by step need the same sums."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _run(data, out, precision: str):
    config = load_config(None, (), method="simclr", data=str(data), backbone="resnet18", out=str(out), epochs=1,
                         batch_size=4, image_size=32, workers=0, warmup_epochs=0, device="cuda", precision=precision,
                         method_options={"hidden_dim": 32, "projection_dim": 8})
    return pretrain(config, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_nccl_group_trains_as_without_a_group(tmp_path, phantoms, deterministic, monkeypatch):
    alone = _run(phantoms, tmp_path / "alone", "off")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist.init_process_group("nccl")
    try:
        grouped = _run(phantoms, tmp_path / "grouped", "off")
        assert dist.is_initialized() and dist.get_backend() == "nccl"  # a group it did not join stays
    finally:
        dist.destroy_process_group()
    assert alone.steps == grouped.steps == 5  # 20 images, batch 4
    torch.testing.assert_close(torch.tensor(grouped.losses), torch.tensor(alone.losses), rtol=1e-4, atol=1e-5)


def test_fp16_runs_with_the_gradient_scaler(tmp_path, phantoms, deterministic):
    fp32 = _run(phantoms, tmp_path / "fp32", "off")
    fp16 = _run(phantoms, tmp_path / "fp16", "fp16")
    assert fp16.steps == fp32.steps == 5
    assert all(math.isfinite(loss) for loss in fp16.losses)
    # Half-precision activations move each loss by well under a percent; a skipped step (an
    # overflow the scaler backs off from) barely moves it either at this learning rate.
    torch.testing.assert_close(torch.tensor(fp16.losses), torch.tensor(fp32.losses), rtol=2e-2, atol=2e-2)
    saved = sorted(fp16.run.glob("checkpoint-*.pt"))
    assert saved
    scaler = torch.load(saved[-1], weights_only=False)["scaler"]
    assert math.isfinite(scaler["scale"]) and scaler["scale"] > 0
