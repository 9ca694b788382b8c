"""`TrainingLoop`: the one loop every run trains with, pretraining or fine-tuning.

It owns what no objective should: the device, DDP wrapping in the caller's process group,
autocast and the gradient scaler, gradient accumulation and clipping, the learning-rate and
weight-decay schedules per optimiser step, atomic checkpoints (every `checkpoint_every` steps and
at each epoch's end, the last `keep_checkpoints` kept) holding every RNG and the loader's
position, exact resume, model selection (`best.pt`: the epoch-end checkpoint with the lowest
`select` value, by default the epoch's mean training loss) with early stopping after `patience`
epochs without a better one, the metrics log and the progress bar. What is particular to a run
reaches it through the `Objective`'s hooks (`parameter_groups`, `schedule`, `after_backward`,
`generators`, `ddp_unused_parameters`) and the `select` and `epoch_end` callbacks; it never asks
which method or task it runs.

The loader is any iterable of `Batch`es with a length (batches per epoch), `epoch` and `batch`
counters and `state_dict()`/`load_state_dict()` that resume inside an epoch: `EpochLoader` and
`DaliLoader` both are. A run killed at any moment and resumed ends with the weights an
uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from cxrfast import process_group
from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.methods.objective import Objective
from cxrfast.schedules import warmup_cosine
from cxrfast.train.checkpoint import (latest_checkpoint, load_checkpoint, restore_rng_state, rng_state, save_best,
                                      save_checkpoint)
from cxrfast.train.config import TrainConfig, save_config
from cxrfast.train.metrics import MetricsLog
from cxrfast.train.optim import clip_gradients, create_optimizer

METRICS = ("step", "epoch", "loss", "lr", "weight_decay", "images_per_s")


class ResumableLoader(Iterable[Batch], Protocol):
    epoch: int
    batch: int

    def __len__(self) -> int: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def resolve_device(choice: str) -> torch.device:
    """`auto`: this process's GPU (torchrun's LOCAL_RANK) where there is one, else the CPU."""
    if choice != "auto":
        return torch.device(choice)
    return torch.device(f"cuda:{process_group.local_rank()}" if torch.cuda.is_available() else "cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a GPU; use bf16 or off on the CPU")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@dataclass(frozen=True)
class LoopResult:
    steps: int
    losses: list[float]  # per optimiser step taken by this call (after a resume, the remaining ones)


class TrainingLoop:
    def __init__(self, config: TrainConfig, objective: Objective, loader: ResumableLoader, *, run: Path,
                 device: torch.device, resume: bool = False, progress: bool = True, description: str = "training",
                 epoch_end: Callable[[TrainingLoop], None] | None = None,
                 select: Callable[[TrainingLoop], float] | None = None):
        """Checks that the run can take a step and sets everything up; writes nothing until
        `run()` (except `config.yaml` of a new run), so that a bad config leaves no trace.
        `select(loop)`, called on rank 0 at each epoch's end, is the value the run is selected
        on (lower is better; NaN never is); every rank gets rank 0's value."""
        self.config, self.loader, self.run_dir, self.device = config, loader, Path(run), device
        self.description, self.epoch_end, self.progress, self.select = description, epoch_end, progress, select
        self.rank, self.world = process_group.rank(), process_group.world_size()
        self.steps_per_epoch = len(loader) // config.accumulate
        if self.steps_per_epoch == 0:
            raise ConfigError(f"data: {len(loader)} batches of {config.batch_size} make no optimiser step of "
                              f"accumulate {config.accumulate} on each of {self.world} processes")
        self.autocast_dtype = autocast_dtype(config.precision, device)
        self.objective = objective.to(device)
        self.generators = objective.generators()
        for generator in self.generators.values():  # ranks draw different masks and crops
            generator.manual_seed(config.seed * 1000 + self.rank)
        self.model = DistributedDataParallel(objective, find_unused_parameters=objective.ddp_unused_parameters) \
            if self.world > 1 else objective
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)
        self.peak_lr = config.lr * config.batch_size * config.accumulate * self.world / 256
        self.optimizer = create_optimizer(config.optimizer, objective.parameter_groups(), self.peak_lr,
                                          config.weight_decay, config.betas)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.autocast_dtype == torch.float16)
        self.step, self.epoch_losses = 0, []
        self.best_value, self.best_epoch, self.stopped = math.inf, 0, False
        self.console = Console()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        elif self.rank == 0:
            save_config(config, self.run_dir / "config.yaml")

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.loader.epoch

    def _apply_schedules(self) -> tuple[float, float]:
        """The step's learning rate and weight decay into the optimiser, and the objective's own."""
        c = self.config
        lr = warmup_cosine(self.step, self.total_steps, self.peak_lr,
                           self.peak_lr if c.schedule == "constant" else c.min_lr, self.warmup_steps)
        wd = warmup_cosine(self.step, self.total_steps, c.weight_decay, c.weight_decay_end)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_factor"]
            if group["decays"]:
                group["weight_decay"] = wd
        self.objective.schedule(self.step, self.total_steps, self.steps_per_epoch)
        return lr, wd

    def run(self) -> LoopResult:
        c, losses = self.config, []
        batches = self.steps_per_epoch * c.accumulate  # an epoch's tail short of a whole step is left out
        metrics = MetricsLog(self.run_dir, METRICS, self.step, self.console) if self.rank == 0 else None
        with self._progress_bar() as bar:
            task = bar.add_task(self.description, total=self.total_steps, completed=self.step, rate="")
            while self.loader.epoch < c.epochs and not self.stopped:
                epoch = self.loader.epoch
                started, images, step_loss = time.perf_counter(), 0, 0.0
                for batch in self.loader:
                    if self.loader.batch > batches:
                        continue
                    batch = batch.to(self.device, non_blocking=True)
                    if self.loader.batch % c.accumulate == 1 % c.accumulate:  # a step's first batch
                        lr, wd = self._apply_schedules()  # before the forward: a momentum is used in it
                    last = self.loader.batch % c.accumulate == 0
                    sync = contextlib.nullcontext() if last or self.world == 1 else self.model.no_sync()
                    with sync, torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                              enabled=self.autocast_dtype is not None):
                        loss = self.model(batch) / c.accumulate
                    self.scaler.scale(loss).backward()
                    step_loss += float(loss.detach())
                    images += len(batch) * self.world
                    if not last:
                        continue
                    self._optimiser_step()
                    step_loss = self._mean_over_ranks(step_loss)
                    losses.append(step_loss)
                    self.epoch_losses.append(step_loss)
                    rate = images / max(time.perf_counter() - started, 1e-9)
                    bar.update(task, completed=self.step, rate=f"{rate:.1f} images/s  loss {step_loss:.4f}")
                    if metrics is not None and (self.step % c.log_every == 0 or self.loader.batch == batches):
                        metrics.write(dict(step=self.step, epoch=epoch, loss=step_loss, lr=lr, weight_decay=wd,
                                           images_per_s=rate))
                    step_loss = 0.0
                    if self.step % c.checkpoint_every == 0 and self.loader.batch < batches:
                        self._checkpoint(epoch_ended=False)
                self._select()  # the loader has moved to the next epoch
                self._checkpoint(epoch_ended=True)
                if self.epoch_end is not None:
                    self.epoch_end(self)
        if metrics is not None:
            metrics.close()
        return LoopResult(self.step, losses)

    def _optimiser_step(self) -> None:
        if self.config.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.objective.parameters(), self.config.clip_grad, self.config.clip_grad_mode)
        self.objective.after_backward(self.step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _mean_over_ranks(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world

    def _select(self) -> None:
        """The epoch's selection value against the best so far; early stopping after `patience`
        epochs without a better one."""
        loss = float(np.mean(self.epoch_losses)) if self.epoch_losses else math.inf
        self.epoch_losses = []
        value = loss if self.select is None else self._from_rank_zero(self.select(self) if self.rank == 0 else 0.0)
        if value < self.best_value:
            self.best_value, self.best_epoch = value, self.epoch
        patience = self.config.patience
        self.stopped = patience is not None and self.epoch - self.best_epoch >= patience

    def _from_rank_zero(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, 0)
        return float(tensor)

    def _checkpoint(self, epoch_ended: bool) -> None:
        rng = rng_state(self.generators)
        if self.world > 1:  # each rank's RNG: ranks draw different masks and dropout
            every = [None] * self.world
            dist.all_gather_object(every, rng)
            rng = every
        if self.rank == 0:
            state = {"model": self.objective.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scaler": self.scaler.state_dict(), "step": self.step, "loader": self.loader.state_dict(),
                     "rng": rng, "best_value": self.best_value, "best_epoch": self.best_epoch,
                     "stopped": self.stopped, "epoch_losses": self.epoch_losses, "config": self.config.to_dict()}
            path = save_checkpoint(state, self.run_dir, self.step, self.config.keep_checkpoints)
            if epoch_ended and self.best_epoch == self.epoch:
                save_best(path, self.run_dir)
        if self.world > 1:
            dist.barrier()

    def _resume(self) -> None:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise ConfigError(f"{self.run_dir}: no checkpoint to resume from")
        state = load_checkpoint(path)
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"])
        self.step, self.epoch_losses = state["step"], state["epoch_losses"]
        self.best_value, self.best_epoch, self.stopped = state["best_value"], state["best_epoch"], state["stopped"]
        restore_rng_state(state["rng"][self.rank] if isinstance(state["rng"], list) else state["rng"],
                          self.generators)

    def _progress_bar(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self.console,
                        disable=not self.progress or self.rank != 0)
