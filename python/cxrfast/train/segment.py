"""Fine-tuning for `--task segmentation`: a manifest CSV whose `mask_column` names each image's
mask (the phantoms' `lung_mask`), a UNet over the backbone's stages trained with Dice + BCE,
model selection on the validation mean Dice.

Every mask's size is checked against its image's before any training. Splits and label
fractions are fine-tuning's (`choose_split`, by patient; no findings to stratify on). The run
writes what a classification run writes, with `segmenter.safetensors` (the selected UNet) and
`predictions_segmentation.csv`: per validation and test image its Dice at σ > ½, blank where the
ground truth is empty (no Dice; counted in run.json, never scored 0 or 1). The data is a
manifest (masks read from their files) or a cache prepared with `--masks` (masks memory-mapped
beside the images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cxrfast.data.datasets import ImageFiles, MaskedViews
from cxrfast.data.labels import LabelTable
from cxrfast.data.loader import EpochLoader
from cxrfast.data.masks import MaskFiles
from cxrfast.data.prepared_cache import MANIFEST_FILE, CachedMasks, PreparedCache, is_prepared_cache
from cxrfast.data.sources import Source, image_shape
from cxrfast.errors import ConfigError, DataError
from cxrfast.eval.auroc import mean_defined
from cxrfast.eval.dice_predictions import DicePredictions
from cxrfast.models import export_encoder
from cxrfast.models.backbones import timm_name
from cxrfast.train.checkpoint import BEST, load_checkpoint
from cxrfast.train.config import FinetuneConfig
from cxrfast.train.finetune import fine_tuning_augment
from cxrfast.train.initial_weights import initial_backbone
from cxrfast.train.labelled_split import SPLIT_FILE, choose_split
from cxrfast.train.loop import TrainingLoop, resolve_device
from cxrfast.train.run_files import RUN_FILE, VALIDATION_FILE, log_epoch, write_json
from cxrfast.train.segmentation import Segmentation

SEGMENTER_FILE, PREDICTIONS_FILE = "segmenter.safetensors", "predictions_segmentation.csv"


@dataclass(frozen=True)
class SegmentationResult:
    run: Path
    steps: int
    best_epoch: int
    segmenter: Path
    predictions: Path
    validation_dice: float  # mean over the images whose ground truth is not empty
    test_dice: float
    losses: list[float]

    def summary(self) -> str:
        return (f"{self.steps} steps, epoch {self.best_epoch} selected; test mean Dice {self.test_dice:.3f}; "
                f"segmenter: {self.segmenter}; predictions: {self.predictions}")


def _masked_images(data: Path, column: str) -> tuple[LabelTable, Dataset, Dataset, Path]:
    """(the table of patients, the images, their masks, the file to name in errors) of a prepared
    cache with masks or of a manifest whose `column` names them."""
    if is_prepared_cache(data):
        cache = PreparedCache(data)
        if cache.masks_column != column:
            raise DataError(f"{data}: prepared " + (f"with the masks of {cache.masks_column!r}, not {column!r}"
                                                    if cache.masks_column else "without masks")
                            + f"; prepare it with --masks {column}, or give the manifest")
        table = LabelTable.read_manifest(data / MANIFEST_FILE, [], path_column="name")
        return table, cache, CachedMasks(cache), data / MANIFEST_FILE
    if not (data.is_file() and data.suffix.lower() == ".csv"):
        raise DataError(f"{data}: segmentation reads a prepared cache with masks or a manifest CSV naming each "
                        f"image's mask in {column!r}")
    table = LabelTable.read_manifest(data, [])
    paths = [data.parent / name for name in table.paths]
    images = ImageFiles([Source(path, name) for path, name in zip(paths, table.paths)])
    return table, images, MaskFiles.from_manifest(data, column, [image_shape(p) for p in paths], table.paths), data


class Segmenting:
    def __init__(self, config: FinetuneConfig, *, resume: bool = False, progress: bool = True):
        config.check()
        timm_name(config.backbone)
        self.config = c = config
        self.table, images, masks, manifest = _masked_images(Path(c.data), c.mask_column)
        table = self.table
        self.split = choose_split(table, manifest, c)
        self.device = resolve_device(c.device)
        torch.manual_seed(c.seed)
        backbone, self.init = initial_backbone(c.backbone, c.init, c.image_size)
        try:
            self.objective = Segmentation.for_backbone(backbone)
        except ValueError as e:
            raise ConfigError(f"backbone {c.backbone!r}: {e}") from e
        stride = self.objective.model.stride
        if c.image_size % stride:
            raise ConfigError(f"image_size {c.image_size} is not divisible by {stride}, the UNet's deepest stride")
        train = MaskedViews(images, masks, self.split.train, augment=fine_tuning_augment(c.image_size, c.augment),
                            seed=c.seed)
        self.validate, self.test = (MaskedViews(images, masks, rows, size=c.image_size)
                                    for rows in (self.split.validate, self.split.test))
        loader = EpochLoader(train, c.batch_size, workers=c.workers, seed=c.seed)
        self.loop = TrainingLoop(c, self.objective, loader, run=Path(c.out), device=self.device, resume=resume,
                                 progress=progress, description="segmentation fine-tuning", select=self._validate)
        if self.loop.rank == 0 and not resume:
            self.split.write(table, self.loop.run_dir / SPLIT_FILE)

    def _predict(self, items):
        return self.objective.predict(items, batch_size=self.config.batch_size, device=self.device,
                                      autocast=self.loop.autocast_dtype)

    def _validate(self, loop: TrainingLoop) -> float:
        dice, _, loss = self._predict(self.validate)
        mean = mean_defined(dice.numpy())
        log_epoch(loop.run_dir / VALIDATION_FILE, loop.epoch,
                  {"step": loop.step, "loss": loss, "mean_dice": mean, "empty_masks": int(dice.isnan().sum())})
        return loss if self.config.select_on == "loss" else -mean

    def run(self) -> SegmentationResult:
        result = self.loop.run()
        run, loop = self.loop.run_dir, self.loop
        if loop.best_epoch and (run / BEST).is_file():
            self.objective.load_state_dict(load_checkpoint(run / BEST)["model"])
        parts = {name: self._predict(items) for name, items in (("validate", self.validate), ("test", self.test))}
        means = {name: mean_defined(dice.numpy()) for name, (dice, _, _) in parts.items()}
        if loop.rank == 0:
            self._write_predictions(run / PREDICTIONS_FILE, parts)
            export_encoder(self.objective.model, run / SEGMENTER_FILE)
            c = self.config
            write_json(run / RUN_FILE, {
                "task": c.task, "mode": c.mode, "init": self.init, "label_fraction": c.label_fraction,
                "official_split": self.split.official,
                "images": {name: len(getattr(self.split, name)) for name in ("train", "unused", "validate", "test")},
                "epochs_run": loop.epoch, "stopped_early": loop.stopped, "best_epoch": loop.best_epoch,
                "selected_on": c.select_on, "steps": loop.step,
                **{f"{name}_mean_dice": means[name] for name in parts},
                **{f"{name}_empty_masks": int(dice.isnan().sum()) for name, (dice, _, _) in parts.items()}})
        return SegmentationResult(run, result.steps, loop.best_epoch, run / SEGMENTER_FILE, run / PREDICTIONS_FILE,
                                  means["validate"], means["test"], result.losses)

    def _write_predictions(self, path: Path, parts) -> None:
        rows = [row for _, r, _ in parts.values() for row in r.tolist()]
        DicePredictions([self.table.paths[k] for k in rows], [self.table.patients[k] for k in rows],
                        [name for name, (_, r, _) in parts.items() for _ in r],
                        np.concatenate([dice.double().numpy() for dice, _, _ in parts.values()])).write(path)
