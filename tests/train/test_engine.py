"""The pretraining engine: a run killed (SIGKILL, from outside) and resumed ends with the weights
of an uninterrupted run; configs from files and overrides; errors before any work starts."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cxrfast.cli import main
from cxrfast.data.augment import Crops, ViewAugment
from cxrfast.data.datasets import SSLViews
from cxrfast.data.loader import EpochLoader
from cxrfast.errors import ConfigError, DataError
from cxrfast.train.linear_probe import ProbeSet, linear_probe
from cxrfast.methods import Objective
from cxrfast.models import create_backbone, import_timm
from cxrfast.schedules import warmup_cosine
from cxrfast.train import TrainConfig, TrainingLoop, load_config, pretrain
from cxrfast.train.checkpoint import checkpoints
from cxrfast.train.demo import DemoSettings

TINY = {"spark": ["method_options.decoder_width=32"],
        "moco": ["method_options.queue_size=16", "method_options.hidden_dim=32", "method_options.projection_dim=8",
                 "method_options.momentum_end=1.0", "augment.rotation=0.0", "optimizer=lars", "clip_grad=1.0"],
        "dino": ["method_options.out_dim=64", "method_options.hidden_dim=32", "method_options.bottleneck_dim=16",
                 "method_options.local_crops=2", "method_options.local_size=32", "method_options.teacher_temp=0.07",
                 "method_options.warmup_teacher_temp_epochs=2", "optimizer=adamw", "clip_grad=3.0",
                 "clip_grad_mode=per_parameter"],
        "swav": ["method_options.prototypes=16", "method_options.hidden_dim=32", "method_options.feature_dim=8",
                 "method_options.local_crops=2", "method_options.local_size=32", "method_options.queue_length=8",
                 "method_options.epoch_queue_starts=1", "method_options.freeze_prototypes_steps=3", "optimizer=lars"],
        "caption": ["method_options.width=32", "method_options.heads=4", "method_options.feedforward=64",
                    "method_options.vocab_size=300", "method_options.max_length=48", "optimizer=adamw"]}
ENCODER = {"spark": "encoder.backbone", "moco": "backbone", "dino": "teacher_backbone",  # what each exports
           "swav": "backbone", "caption": "backbone"}


def _arguments(method: str, data: Path, out: Path) -> list[str]:
    settings = ["epochs=2", "batch_size=4", "image_size=64", "workers=0", "warmup_epochs=1", "checkpoint_every=1",
                "keep_checkpoints=2", "log_every=1", "lr=0.05", *TINY[method]]
    data = data / "labels.csv" if method == "caption" else data  # the reports are a column of the manifest
    return ["--method", method, "--data", str(data), "--backbone", "resnet18", "--out", str(out),
            *[a for s in settings for a in ("--set", s)]]


def _metrics(run: Path) -> dict[int, str]:
    with open(run / "metrics.csv", newline="") as f:
        return {int(row["step"]): row["loss"] for row in csv.DictReader(f)}


@pytest.mark.parametrize("method", ["spark", "moco", "dino", "swav", "caption"])
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, phantoms, method, one_thread):
    whole = tmp_path / "whole"
    assert main(["pretrain", *_arguments(method, phantoms, whole), "--quiet"]) == 0

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "cxrfast.cli", "pretrain", *_arguments(method, phantoms, killed), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=one_thread)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint-00000004.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # mid-run, at whatever the process was doing
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed_from = int(checkpoints(killed)[-1].stem.split("-")[1])
    assert 4 <= resumed_from < 10  # inside the run: 5 steps per epoch, 2 epochs

    assert main(["pretrain", *_arguments(method, phantoms, killed), "--resume", "--quiet"]) == 0
    final = torch.load(checkpoints(whole)[-1], weights_only=False)["model"]
    for name, value in torch.load(checkpoints(killed)[-1], weights_only=False)["model"].items():
        assert torch.equal(value, final[name]), name  # the queues of MoCo and SwAV, the EMA encoders, DINO's centre included
    if method == "caption":  # the vocabulary the resumed run read back is the one it was trained with
        assert (killed / "tokenizer.json").read_text() == (whole / "tokenizer.json").read_text()
    assert _metrics(killed) == _metrics(whole)  # every step's loss, those after the resume too
    # TensorBoard holds the same losses, once per step: the killed run's extra events were purged.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in (whole, killed):
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        board = {e.step: e.value for e in events.Scalars("train/loss")}
        assert sorted(board) == sorted(_metrics(run))
        assert all(abs(board[k] - float(v)) <= 1e-5 * abs(board[k]) + 1e-7 for k, v in _metrics(run).items())
    timm = import_timm()
    encoder = timm.create_model("resnet18", in_chans=1, num_classes=0, checkpoint_path=str(killed / "encoder.safetensors"))
    assert torch.equal(encoder.conv1.weight, final[f"{ENCODER[method]}.conv1.weight"])


def test_simclr_from_python_with_probe(tmp_path, phantoms):
    config = load_config(None, ("augment.blur=0.0", f"probe_labels='{phantoms / 'labels.csv'}'"),
                         method="simclr", data=str(phantoms),
                         backbone="resnet18", out=str(tmp_path / "run"), epochs=1, batch_size=4, image_size=32,
                         workers=0, warmup_epochs=0, method_options={"hidden_dim": 32, "projection_dim": 8})
    result = pretrain(config, progress=False)
    assert result.steps == 5 and len(result.losses) == 5  # 20 images, batches of 4
    assert load_config(tmp_path / "run" / "config.yaml") == config  # the saved config reads back
    with open(tmp_path / "run" / "probe.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["mean_auroc"]) == pytest.approx(result.probe.mean, abs=1e-4)
    # The probe of the exported encoder, run again from the file, gives the same AUROCs.
    from safetensors.torch import load_file

    encoder = create_backbone("resnet18")
    encoder.load_state_dict(load_file(result.encoder))
    again = linear_probe(encoder, ProbeSet.read(phantoms / "labels.csv"), 32, seed=0)
    assert again.auroc == pytest.approx(result.probe.auroc, nan_ok=True)


class _Regression(Objective):
    """A loss that is a mean over images, on a network without batch statistics: the mean over 8
    images is the mean of two means over 4, so accumulation must give the same steps. It records
    the hooks the loop calls."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, 1))
        self.calls = []

    def training_step(self, batch):
        x = batch.views[0]
        return F.mse_loss(self.net(x)[:, 0], 3 * x.mean((1, 2, 3)))

    def schedule(self, step, total_steps, steps_per_epoch):
        self.calls.append(("schedule", step, total_steps))

    def after_backward(self, step):
        self.calls.append(("after_backward", step, self.net[0].weight.grad is not None))


class _Noise(torch.utils.data.Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, index):
        return torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(index))


def _loop_run(tmp_path, batch_size, accumulate):
    config = TrainConfig(out=str(tmp_path / f"{batch_size}x{accumulate}"), epochs=2, batch_size=batch_size,
                         accumulate=accumulate, optimizer="lars", lr=1.0, warmup_epochs=0, workers=0, log_every=1)
    loader = EpochLoader(SSLViews(_Noise(), [Crops(ViewAugment(size=32), 1)]), batch_size, workers=0)
    torch.manual_seed(0)
    objective = _Regression()
    result = TrainingLoop(config, objective, loader, run=Path(config.out), device=torch.device("cpu"),
                          progress=False).run()
    return result, objective


def test_accumulation_equals_the_larger_batch(tmp_path):
    """Batch 4 × accumulate 2 against batch 8 × 1: the same images per step (the sampler's order
    does not depend on the batch size), equal losses and weights up to float rounding."""
    (large, large_model), (accumulated, accumulated_model) = _loop_run(tmp_path, 8, 1), _loop_run(tmp_path, 4, 2)
    assert large.steps == accumulated.steps == 4  # 2 steps of 16 images per epoch (the tail of 4 left out)
    torch.testing.assert_close(torch.tensor(accumulated.losses), torch.tensor(large.losses), rtol=1e-5, atol=1e-7)
    assert large.losses[-1] < large.losses[0]  # it trained
    for (name, a), (_, b) in zip(accumulated_model.named_parameters(), large_model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # The objective's hooks: once per optimiser step, in order, after the step's gradients exist.
    expected = [call for step in range(4) for call in (("schedule", step, 4), ("after_backward", step, True))]
    assert accumulated_model.calls == large_model.calls == expected


def test_pretrain_from_the_dali_pipeline(tmp_path, phantoms):
    """loader=dali on DALI's CPU operators. With crops of the whole (square) image, its views are
    the display values themselves, as the torch loader's are, and both loaders follow the same
    order: the runs' losses agree."""
    losses = {}
    for loader in ("torch", "dali"):
        config = load_config(None, ("augment.scale=[1.0, 1.0]", "augment.ratio=[1.0, 1.0]"), method="spark",
                             data=str(phantoms), backbone="resnet18", out=str(tmp_path / loader), epochs=1,
                             batch_size=4, image_size=64, workers=1, warmup_epochs=0, loader=loader,
                             method_options={"decoder_width": 32})
        losses[loader] = pretrain(config, progress=False).losses
    assert len(losses["dali"]) == 5
    torch.testing.assert_close(torch.tensor(losses["dali"]), torch.tensor(losses["torch"]), rtol=1e-4, atol=1e-5)


def test_bf16_autocast_on_the_cpu(tmp_path, phantoms):
    """precision=bf16 runs the step under autocast (the losses compute in float32 inside): finite,
    and not the float32 run's losses."""
    runs = {}
    for precision in ("off", "bf16"):
        config = load_config(None, (), method="spark", data=str(phantoms), backbone="resnet18",
                             out=str(tmp_path / precision), epochs=1, batch_size=4, image_size=64, workers=0,
                             warmup_epochs=0, precision=precision, method_options={"decoder_width": 32})
        runs[precision] = pretrain(config, progress=False).losses
    assert all(torch.isfinite(torch.tensor(runs["bf16"])))
    assert runs["bf16"] != runs["off"]
    torch.testing.assert_close(torch.tensor(runs["bf16"]), torch.tensor(runs["off"]), rtol=0.05, atol=0.05)
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        pretrain(load_config(None, (), data=str(phantoms), out=str(tmp_path / "fp16"), backbone="resnet18",
                             image_size=64, batch_size=4, workers=0, precision="fp16"), progress=False)


def test_config_files_and_overrides(tmp_path):
    (tmp_path / "run.toml").write_text('method = "moco"\nepochs = 3\n[method_options]\nqueue_size = 128\n')
    (tmp_path / "run.yaml").write_text("method: moco\nepochs: 3\nmethod_options:\n  queue_size: 128\n")
    for name in ("run.toml", "run.yaml"):
        config = load_config(tmp_path / name, ("epochs=5", "method_options.temperature=0.1", "out=runs/x"))
        assert (config.method, config.epochs, config.out) == ("moco", 5, "runs/x")
        assert config.method_options == {"queue_size": 128, "temperature": 0.1}


def test_config_values_are_checked_against_their_types():
    from cxrfast.train import FinetuneConfig

    config = load_config(None, ("lr=1", "clip_grad=none", "findings=['Edema']"), kind=FinetuneConfig)
    assert (config.lr, type(config.lr), config.clip_grad, config.findings) == (1.0, float, None, ["Edema"])
    assert load_config(None, ("patience=null",), kind=FinetuneConfig).patience is None
    for override, message in [("epochs=ten", "epochs must be an int, not 'ten'"),
                              ("epochs=none", "epochs must be an int, not 'none'"),
                              ("patience=1.5", r"patience must be an int \(or none\), not 1.5"),
                              ("single_label=1", "single_label must be a bool, not 1"),
                              ("findings='Edema'", "findings must be a list of names"),
                              ("augment=3", "augment must be a table of options, not 3")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, (override,), kind=FinetuneConfig)


def test_schedule_shape():
    assert warmup_cosine(0, 100, 1.0, 0.0, warmup=10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 1.0, 0.0, warmup=10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 1.0, 0.0, warmup=10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 1.0, 0.0, warmup=10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 1.0, 0.2, warmup=10) == pytest.approx(0.2)
    assert warmup_cosine(50, 100, 0.04, 0.2) == pytest.approx(0.12)


@pytest.mark.parametrize("change,error,message", [
    (dict(method="barlow"), ConfigError, "unknown method 'barlow'"),
    (dict(backbone="resnet51"), ConfigError, "unknown backbone 'resnet51'"),
    (dict(image_size=200), ConfigError, "not divisible by SparK's patch size 32"),
    (dict(optimizer="sgd"), ConfigError, "unknown optimizer 'sgd'"),
    (dict(data="/nonexistent/folder"), ConfigError, "does not exist"),
    (dict(batch_size=64), ConfigError, "make no optimiser step"),
    (dict(clip_grad=1.0, clip_grad_mode="per_layer"), ConfigError, "clip_grad_mode must be one of global, per_parameter"),
    (dict(clip_grad=0.0), ConfigError, "clip_grad must be positive"),
    (dict(method="gmml"), ConfigError, "GMML needs a vision transformer"),
    (dict(method_options={"decoder_width": 16}), ConfigError, "decoder_width 16 must be at least 32"),
    (dict(empty=True), DataError, "no DICOM, PNG, JPEG or JSRT .IMG files"),
])
def test_bad_configs_fail_before_any_work(tmp_path, phantoms, change, error, message):
    data = tmp_path / "empty" if change.pop("empty", False) else phantoms
    data.mkdir(exist_ok=True)
    values = dict(data=str(data), out=str(tmp_path / "run"), backbone="resnet18", image_size=64, batch_size=4,
                  workers=0)
    with pytest.raises(error, match=message):
        pretrain(load_config(None, (), **{**values, **change}), progress=False)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    with pytest.raises(ConfigError, match="unknown config keys \\['learning_rate'\\]"):
        load_config(None, ("learning_rate=0.1",))


def test_cli_reports_config_errors(capsys, tmp_path, phantoms, monkeypatch):
    with pytest.raises(SystemExit) as exit:  # argparse names the choices
        main(["pretrain", "--method", "barlow", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    choices = "'spark', 'simclr', 'moco', 'byol', 'swav', 'gmml', 'dino', 'caption'"
    assert exit.value.code == 2 and f"invalid choice: 'barlow' (choose from {choices})" in capsys.readouterr().err
    # A config error is the user's to fix: a message and exit status 2, no traceback.
    assert main(["pretrain", "--data", str(phantoms), "--out", str(tmp_path / "r"), "--image-size", "200"]) == 2
    assert "not divisible by SparK's patch size 32" in capsys.readouterr().err
    # Anything else is a bug and keeps its traceback.
    import cxrfast.train

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(cxrfast.train, "pretrain", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["pretrain", "--data", str(phantoms), "--out", str(tmp_path / "r")])


def test_every_subcommand_help_names_its_choices_and_defaults(capsys):
    for command, expected in [("pretrain", ["{spark,simclr,moco,byol,swav,gmml,dino,caption}", "{torch,dali}",
                                            "(default: 'resnet50')",
                                            "resnet18, resnet50, convnext_tiny", "(default: 224)"]),
                              ("phantoms", ["(default: 100)", "(default: explicit)", "jpeg2000"]),
                              ("finetune", ["{linear,full,frozen_then_full}", "{classification,segmentation}",
                                            "(default: 'random')", "(default: 1.0)", "(default: 30)"]),
                              ("prepare", ["(default: 512)"]),
                              ("demo", [f"(default: {DemoSettings().images})", f"(default: {DemoSettings().epochs})"])]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for fragment in expected:
            assert fragment in text, (command, fragment)
