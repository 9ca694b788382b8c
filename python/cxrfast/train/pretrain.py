"""`pretrain(config)`: a self-supervised run from a folder of radiographs (or a prepared cache) to
an exported encoder, on one process or many (`torchrun`: DDP, NCCL on GPUs, gloo on the CPU).

It builds what a pretraining run needs — the method on its backbone, the views the method asks
for, the loader (cxrfast's DataLoader or the DALI pipeline), the linear-probe monitor — and hands
them to the `TrainingLoop`. A run directory holds `config.yaml`, `metrics.csv`, checkpoints,
`probe.csv` when a probe is configured and, at the end, `encoder.safetensors`. `resume=True`
continues from the newest checkpoint exactly.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from cxrfast.data.augment import Crops
from cxrfast.data.datasets import ImageFiles, SSLViews
from cxrfast.data.loader import EpochLoader
from cxrfast.data.prepared_cache import PreparedCache, is_prepared_cache
from cxrfast import process_group
from cxrfast.errors import ConfigError
from cxrfast.train.linear_probe import ProbeResult, ProbeSet, linear_probe
from cxrfast.methods import method_class
from cxrfast.models import create_backbone, export_encoder
from cxrfast.models.backbones import timm_name
from cxrfast.process_group import joined_from_environment
from cxrfast.train.config import PretrainConfig, load_config
from cxrfast.train.loop import ResumableLoader, TrainingLoop, resolve_device


@dataclass(frozen=True)
class RunResult:
    run: Path
    steps: int
    encoder: Path
    losses: list[float]  # per optimiser step of this process's run (resumed steps only)
    probe: ProbeResult | None = None  # the linear probe of the final encoder, when configured


def pretrain(config: PretrainConfig | str | os.PathLike, *, overrides: tuple[str, ...] = (), resume: bool = False,
             progress: bool = True) -> RunResult:
    """Runs in the caller's process group if it has joined one, else in torchrun's (joined here
    and left at the end), else in this process alone."""
    if not isinstance(config, PretrainConfig):
        config = load_config(config, overrides)
    with joined_from_environment():
        return Pretraining(config, resume=resume, progress=progress).run()


def open_images(data: str | os.PathLike, display: str | None = None):
    """The prepared cache when `data` is one (a CT cache of HU read through `display`), else the
    images its folder or manifest names."""
    if is_prepared_cache(data):
        return PreparedCache(data, display)
    if display is not None:
        raise ConfigError(f"{data}: display {display} applies to a prepared CT cache of Hounsfield units")
    return ImageFiles(data)


def open_loader(config: PretrainConfig, crops: list[Crops], device: torch.device, images,
                views: Dataset) -> ResumableLoader:
    if config.loader == "dali":
        if not isinstance(views, SSLViews):
            raise ConfigError(f"loader dali feeds images alone; method {config.method} reads more with them (its "
                              "reports): use loader torch")
        if images.channels != 1 or config.display is not None:
            raise ConfigError(f"loader dali feeds one channel of display values; {config.data} gives "
                              f"{images.channels} (HU or several windows): use loader torch")
        try:
            from cxrfast.data.dali import DaliLoader
        except ImportError as e:
            raise ConfigError(f"loader dali: {e}") from e
        # DALI's Python sources run in worker processes: at least one.
        return DaliLoader(config.data, config.batch_size, crops=crops, device="cuda" if device.type == "cuda" else "cpu",
                          workers=max(1, config.workers), seed=config.seed)
    return EpochLoader(views, config.batch_size, workers=config.workers, seed=config.seed)


class Pretraining:
    def __init__(self, config: PretrainConfig, *, resume: bool = False, progress: bool = True):
        config.check()
        method_type = method_class(config.method)
        timm_name(config.backbone)
        method_type.check_options(config.image_size, config.method_options)
        crops = method_type.crops(config.image_size, config.augment, config.method_options)
        self.config = config
        self.probe_set = (ProbeSet.read(config.probe_labels, config.probe_findings, config.display)
                          if config.probe_labels else None)
        self.device = resolve_device(config.device)
        images = open_images(config.data, config.display)
        views, from_data = method_type.training_views(images, crops, seed=config.seed, run=Path(config.out),
                                                      options=config.method_options, rank=process_group.rank(),
                                                      resume=resume)
        loader = open_loader(config, crops, self.device, images, views)  # an empty folder fails here, before any model
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        depth = {} if config.drop_path is None else {"drop_path_rate": config.drop_path}
        backbone = create_backbone(config.backbone, checkpoint=config.init_checkpoint, image_size=config.image_size,
                                   in_chans=images.channels, **depth)
        self.method = method_type.build(backbone, config.image_size, {**config.method_options, **from_data})
        self.loop = TrainingLoop(config, self.method, loader, run=Path(config.out), device=self.device, resume=resume,
                                 progress=progress, description="pretraining", epoch_end=self._monitor)

    def run(self) -> RunResult:
        result = self.loop.run()
        encoder, probe = self.loop.run_dir / "encoder.safetensors", None
        if self.loop.rank == 0:
            export_encoder(self.method.backbone_copy(), encoder)
            probe = self._probe()
        return RunResult(self.loop.run_dir, result.steps, encoder, result.losses, probe)

    def _monitor(self, loop: TrainingLoop) -> None:
        """At an epoch's end: the probe every `probe_every` epochs (the last one is `run`'s)."""
        every = self.config.probe_every
        if every and loop.epoch % every == 0 and loop.epoch < self.config.epochs:
            self._probe()

    def _probe(self) -> ProbeResult | None:
        """The linear probe of the current encoder (rank 0), logged to probe.csv and the console."""
        loop = self.loop
        if loop.rank != 0 or self.probe_set is None:
            return None
        result = linear_probe(self.method.backbone_copy().to(self.device), self.probe_set, self.config.image_size,
                              device=self.device, seed=self.config.seed)
        path = loop.run_dir / "probe.csv"
        findings = self.probe_set.findings
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", "step", "mean_auroc", *findings])
            writer.writerow([loop.epoch, loop.step, f"{result.mean:.4f}",
                             *["" if math.isnan(result.auroc[k]) else f"{result.auroc[k]:.4f}" for k in findings]])
        loop.console.print(f"epoch {loop.epoch}: linear probe mean AUROC {result.mean:.3f} "
                           f"({result.train} train / {result.test} test images)")
        return result
