"""`pretrain(config)`: a self-supervised run from a folder of radiographs (or a prepared cache) to
an exported encoder, on one process or many (`torchrun`: DDP, NCCL on GPUs, gloo on the CPU).

A run directory holds `config.yaml`, `metrics.csv`, checkpoints (every `checkpoint_every`
optimiser steps and at each epoch's end, the last `keep_checkpoints` kept, `best.pt` by epoch
loss) and, at the end, `encoder.safetensors`. `resume=True` continues from the newest checkpoint
exactly: weights, optimiser, gradient scaler, step, the loader's position inside its epoch, every
RNG (global and the method's own), MoCo's queue (a buffer), so that a run killed at any moment
and resumed ends with the weights an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from cxrfast.data.augment import ViewAugment
from cxrfast.data.datasets import ImageFiles, SSLViews
from cxrfast.data.loader import EpochLoader
from cxrfast.data.prepared_cache import PreparedCache, is_prepared_cache
from cxrfast.errors import ConfigError
from cxrfast.eval.linear_probe import ProbeResult, ProbeSet, linear_probe
from cxrfast.methods import METHODS, create_method
from cxrfast.models import create_backbone, export_encoder
from cxrfast.models.backbones import timm_name
from cxrfast.train.checkpoint import latest_checkpoint, load_checkpoint, save_best, save_checkpoint
from cxrfast.train.config import OPTIMIZERS, PRECISIONS, PretrainConfig, load_config, save_config
from cxrfast.train.optim import create_optimizer
from cxrfast.train.schedule import warmup_cosine

# SparK's recipe augments with random resized crops only (scale 0.67–1); the contrastive methods
# need the full set of views to have something to be invariant to.
METHOD_AUGMENT = {"spark": dict(scale=(0.67, 1.0), rotation=0.0, brightness=0.0, contrast=0.0, gamma=0.0, blur=0.0)}
METRICS = ("step", "epoch", "loss", "lr", "weight_decay", "images_per_s")


@dataclass(frozen=True)
class RunResult:
    run: Path
    steps: int
    encoder: Path
    losses: list[float]  # per optimiser step of this process's run (resumed steps only)
    probe: ProbeResult | None = None  # the linear probe of the final encoder, when configured


def pretrain(config: PretrainConfig | str | os.PathLike, *, overrides: tuple[str, ...] = (), resume: bool = False,
             progress: bool = True) -> RunResult:
    if not isinstance(config, PretrainConfig):
        config = load_config(config, overrides)
    joined = not dist.is_initialized()
    try:
        return Trainer(config, resume=resume, progress=progress).run()
    finally:
        if joined and dist.is_initialized():  # a group this call joined (torchrun's) is left again
            dist.destroy_process_group()


def check_config(config: PretrainConfig) -> None:
    """Everything that can be wrong with a config, found before any work starts."""
    if config.method not in METHODS:
        raise ConfigError(f"unknown method {config.method!r}: one of {', '.join(METHODS)}")
    timm_name(config.backbone)
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}: one of {', '.join(OPTIMIZERS)}")
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {config.precision!r}")
    for name in ("image_size", "epochs", "batch_size", "accumulate", "checkpoint_every", "log_every"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, not {getattr(config, name)}")
    if config.method == "spark" and config.image_size % 32:
        raise ConfigError(f"image_size {config.image_size} is not divisible by SparK's patch size 32")
    if not config.data:
        raise ConfigError("data: give a prepared cache, a folder of images or a manifest CSV")
    if not Path(config.data).exists():
        raise ConfigError(f"data: {config.data} does not exist")


def open_images(data: str | os.PathLike):
    """The prepared cache when `data` is one, else the images its folder or manifest names."""
    return PreparedCache(data) if is_prepared_cache(data) else ImageFiles(data)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank), joining the process group torchrun describes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


class Trainer:
    def __init__(self, config: PretrainConfig, *, resume: bool = False, progress: bool = True):
        check_config(config)
        images = open_images(config.data)  # an empty folder fails here, before any model is built
        self.probe_set = ProbeSet.read(config.probe_labels, config.probe_findings) if config.probe_labels else None
        self.config, self.progress = config, progress
        self.rank, self.world, local_rank = _distributed()
        self.device = torch.device(config.device if config.device != "auto" else
                                   (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))
        self.run_dir = Path(config.out)
        self.run_dir.mkdir(parents=True, exist_ok=True)

        torch.manual_seed(config.seed)  # the same initial weights on every rank
        backbone = create_backbone(config.backbone, checkpoint=config.init_checkpoint)
        options = dict(config.method_options)
        if config.method == "spark":
            options.setdefault("image_size", config.image_size)
        self.method = create_method(config.method, backbone, **options).to(self.device)
        for generator in self._generators().values():
            generator.manual_seed(config.seed * 1000 + self.rank)
        # SparK runs the backbone's forward_features: a classifier-free head's norm (ConvNeXt's)
        # gets no gradient, which DDP must be told to expect.
        self.model = DistributedDataParallel(self.method, find_unused_parameters=config.method == "spark") \
            if self.world > 1 else self.method

        augment = ViewAugment(size=config.image_size, **{**METHOD_AUGMENT.get(config.method, {}), **config.augment})
        views = SSLViews(images, augment, views=self.method.views, seed=config.seed)
        self.loader = EpochLoader(views, config.batch_size, workers=config.workers, seed=config.seed)
        self.steps_per_epoch = len(self.loader) // config.accumulate
        if self.steps_per_epoch == 0:
            raise ConfigError(f"data: {len(images)} images make no optimiser step of batch_size "
                              f"{config.batch_size} × accumulate {config.accumulate} × {self.world} processes")
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)
        global_batch = config.batch_size * config.accumulate * self.world
        self.peak_lr = config.lr * global_batch / 256
        self.optimizer = create_optimizer(config.optimizer, self.method, self.peak_lr, config.weight_decay)
        self.autocast_dtype = self._precision()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.step, self.best_loss, self.epoch_losses = 0, math.inf, []
        self.start_momentum = getattr(self.method, "momentum", None)
        if resume:
            self._resume()
        elif self.rank == 0:
            save_config(config, self.run_dir / "config.yaml")

    def _precision(self) -> torch.dtype | None:
        choice = self.config.precision
        if choice == "auto":
            if self.device.type != "cuda":
                return None
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if choice == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision fp16 needs a GPU; use bf16 or off on the CPU")
        return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]

    def _generators(self) -> dict[str, torch.Generator]:
        return {k: v for k, v in vars(self.method).items() if isinstance(v, torch.Generator)}

    # Schedules, per optimiser step.
    def _apply_schedules(self) -> tuple[float, float]:
        c = self.config
        lr = warmup_cosine(self.step, self.total_steps, self.peak_lr, c.min_lr, self.warmup_steps)
        wd = warmup_cosine(self.step, self.total_steps, c.weight_decay, c.weight_decay_end)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if group["decays"]:
                group["weight_decay"] = wd
        if self.start_momentum is not None and c.momentum_end is not None:
            self.method.momentum = warmup_cosine(self.step, self.total_steps, self.start_momentum, c.momentum_end)
        return lr, wd

    def run(self) -> RunResult:
        c, losses = self.config, []
        batches = self.steps_per_epoch * c.accumulate  # an epoch's tail short of a whole step is left out
        with self._progress_bar() as bar:
            metrics = self._metrics_writer(bar.console)
            task = bar.add_task("pretraining", total=self.total_steps, completed=self.step, rate="")
            while self.loader.epoch < c.epochs:
                epoch = self.loader.epoch
                started, images, step_loss = time.perf_counter(), 0, 0.0
                for batch in self.loader:
                    if self.loader.batch > batches:
                        continue
                    batch = tuple(view.to(self.device, non_blocking=True) for view in batch)
                    if self.loader.batch % c.accumulate == 1 % c.accumulate:  # a step's first batch
                        lr, wd = self._apply_schedules()  # before the forward: MoCo's momentum is used in it
                    last = self.loader.batch % c.accumulate == 0
                    sync = contextlib.nullcontext() if last or self.world == 1 else self.model.no_sync()
                    with sync, torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                              enabled=self.autocast_dtype is not None):
                        loss = self.model(batch) / c.accumulate
                    self.scaler.scale(loss).backward()
                    step_loss += float(loss.detach())
                    images += batch[0].shape[0] * self.world
                    if not last:
                        continue
                    if c.clip_grad is not None:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(self.method.parameters(), c.clip_grad)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    step_loss = self._mean_over_ranks(step_loss)
                    losses.append(step_loss)
                    self.epoch_losses.append(step_loss)
                    rate = images / max(time.perf_counter() - started, 1e-9)
                    bar.update(task, completed=self.step, rate=f"{rate:.1f} images/s  loss {step_loss:.4f}")
                    if self.step % c.log_every == 0 or self.loader.batch == batches:
                        metrics(dict(step=self.step, epoch=epoch, loss=step_loss, lr=lr, weight_decay=wd,
                                     images_per_s=rate))
                    step_loss = 0.0
                    if self.step % c.checkpoint_every == 0 and self.loader.batch < batches:
                        self._checkpoint(best=False)
                self._checkpoint(best=True)  # the loader has moved to the next epoch
                if c.probe_every and self.loader.epoch % c.probe_every == 0 and self.loader.epoch < c.epochs:
                    self._probe(bar.console)
        encoder, probe = self.run_dir / "encoder.safetensors", None
        if self.rank == 0:
            export_encoder(self.method.backbone_copy(), encoder)
            probe = self._probe(bar.console) if self.probe_set is not None else None
        return RunResult(self.run_dir, self.step, encoder, losses, probe)

    def _probe(self, console) -> ProbeResult | None:
        """The linear probe of the current encoder (rank 0), logged to probe.csv and the console."""
        if self.rank != 0 or self.probe_set is None:
            return None
        result = linear_probe(self.method.backbone_copy().to(self.device), self.probe_set, self.config.image_size,
                              device=self.device, seed=self.config.seed)
        path = self.run_dir / "probe.csv"
        findings = self.probe_set.findings
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", "step", "mean_auroc", *findings])
            writer.writerow([self.loader.epoch, self.step, f"{result.mean:.4f}",
                             *[f"{result.auroc[k]:.4f}" if k in result.auroc else "" for k in findings]])
        console.print(f"epoch {self.loader.epoch}: linear probe mean AUROC {result.mean:.3f} "
                      f"({result.train} train / {result.test} test images)")
        return result

    def _mean_over_ranks(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world

    # Checkpoints.
    def _rng_state(self) -> dict:
        return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "method": {k: g.get_state() for k, g in self._generators().items()}}

    def _checkpoint(self, best: bool) -> None:
        rng = self._rng_state()
        if self.world > 1:  # each rank's RNG: ranks draw different masks and dropout
            every = [None] * self.world
            dist.all_gather_object(every, rng)
            rng = every
        epoch_loss = float(np.mean(self.epoch_losses)) if self.epoch_losses else math.inf
        if best:  # an epoch just ended
            self.best_loss, improved = min(self.best_loss, epoch_loss), epoch_loss < self.best_loss
            self.epoch_losses = []
        if self.rank == 0:
            state = {"model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scaler": self.scaler.state_dict(), "step": self.step, "loader": self.loader.state_dict(),
                     "rng": rng, "best_loss": self.best_loss, "epoch_losses": self.epoch_losses,
                     "config": self.config.to_dict()}
            path = save_checkpoint(state, self.run_dir, self.step, self.config.keep_checkpoints)
            if best and improved:
                save_best(path, self.run_dir)
        if self.world > 1:
            dist.barrier()

    def _resume(self) -> None:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise ConfigError(f"{self.run_dir}: no checkpoint to resume from")
        state = load_checkpoint(path)
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"])
        self.step, self.best_loss, self.epoch_losses = state["step"], state["best_loss"], state["epoch_losses"]
        rng = state["rng"][self.rank] if isinstance(state["rng"], list) else state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        for name, generator in self._generators().items():
            generator.set_state(rng["method"][name])
        self._trim_metrics()

    # Logs.
    def _metrics_writer(self, console):
        """Rows to `metrics.csv` and, where the tensorboard package is installed (the
        `tensorboard` extra), scalars to `tensorboard/` under the run."""
        path = self.run_dir / "metrics.csv"
        if self.rank != 0:
            return lambda row: None
        if not path.exists():
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(METRICS)
        try:
            from torch.utils.tensorboard import SummaryWriter

            board = SummaryWriter(self.run_dir / "tensorboard", purge_step=self.step + 1)
        except ImportError:
            console.print("TensorBoard is not installed (pip install 'cxrfast[tensorboard]'): metrics.csv only")
            board = None

        def write(row: dict) -> None:
            with open(path, "a", newline="") as f:
                csv.writer(f).writerow([f"{row[k]:.6g}" if isinstance(row[k], float) else row[k] for k in METRICS])
            if board is not None:
                for key in METRICS[2:]:
                    board.add_scalar(f"train/{key}", row[key], row["step"])
                board.flush()
        return write

    def _trim_metrics(self) -> None:
        """Rows logged after the checkpoint resumed from are logged again by the resumed run."""
        path = self.run_dir / "metrics.csv"
        if self.rank != 0 or not path.exists():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= self.step]
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(temporary, path)

    def _progress_bar(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                        disable=not self.progress or self.rank != 0)
