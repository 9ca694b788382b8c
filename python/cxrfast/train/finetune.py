"""`finetune(config)`: a labelled set (a prepared cache or a manifest CSV) and a starting encoder
to a classifier and the predictions the evaluation reads, on one process or many (`torchrun`).

Everything that can be wrong with the inputs is found before the first step: findings the labels
lack, a split or label fraction that leaves a finding without a positive or a negative to train
on, a single-label table with other than one class per image, an init that does not fit the
backbone. Then the `TrainingLoop` trains the `Classification` objective, selecting the model at
each epoch's end on the validation split (mean AUROC, or loss) and stopping after `patience`
epochs without a better one. Linear mode trains the classifier alone on features computed once
from the frozen backbone.

A run directory holds `config.yaml`, `split.csv` (each image's part), checkpoints and `best.pt`,
`metrics.csv` and `validation.csv` (per epoch: loss, mean and per-finding AUROC), and at the end
`classifier.safetensors` (timm's layout, the selected weights), `predictions.csv` (validation and
test), `thresholds.json` (Youden's on validation, per finding) and `run.json` (where the backbone
started, the images of each part, the selected epoch, the validation and test AUROCs).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxrfast.data.augment import ViewAugment
from cxrfast.data.datasets import LabelledViews
from cxrfast.data.labelled_images import LabelledImages
from cxrfast.data.labels.findings import COMPETITION_FINDINGS
from cxrfast.data.loader import EpochLoader
from cxrfast.errors import ConfigError, DataError
from cxrfast.eval.auroc import mean_defined, per_finding_auroc
from cxrfast.train.features import encode
from cxrfast.eval.predictions import Predictions
from cxrfast.eval.thresholds import per_finding, youden_threshold
from cxrfast.losses import positive_weights
from cxrfast.models import export_encoder
from cxrfast.models.backbones import timm_name
from cxrfast.process_group import joined_from_environment
from cxrfast.train.checkpoint import BEST, load_checkpoint
from cxrfast.train.classification import Classification
from cxrfast.train.config import FinetuneConfig, load_config
from cxrfast.train.initial_weights import initial_backbone
from cxrfast.train.labelled_split import SPLIT_FILE, choose_split
from cxrfast.train.linear_features import FeatureRows, Standardization, classifier_for, into_backbone
from cxrfast.train.loop import TrainingLoop, resolve_device
from cxrfast.train.run_files import RUN_FILE, VALIDATION_FILE, log_epoch, write_json

# Fine-tuning's augmentation: a mild random resized crop and ±7° rotation; no flip (laterality:
# the heart is on the left) and no intensity changes. `augment` in the config overrides fields.
FINETUNE_AUGMENT = {"scale": (0.8, 1.0), "rotation": 7.0, "hflip": 0.0, "brightness": 0.0, "contrast": 0.0,
                    "gamma": 0.0, "blur": 0.0}


def fine_tuning_augment(size: int, overrides: dict) -> ViewAugment:
    """FINETUNE_AUGMENT at `size` with the config's `augment` fields over it."""
    try:
        return ViewAugment(size=size, **{**FINETUNE_AUGMENT, **overrides})
    except (TypeError, ValueError) as e:  # an unknown field, or a value out of its range
        raise ConfigError(f"augment: {e}; the fields are ViewAugment's (cxrfast.data.augment)") from e


CLASSIFIER_FILE, PREDICTIONS_FILE, THRESHOLDS_FILE = "classifier.safetensors", "predictions.csv", "thresholds.json"


@dataclass(frozen=True)
class FinetuneResult:
    run: Path
    steps: int
    best_epoch: int  # the epoch whose weights were selected (0: none was better than NaN; the last kept)
    classifier: Path
    predictions: Path
    validation_auroc: dict[str, float]
    test_auroc: dict[str, float]
    thresholds: dict[str, float]
    losses: list[float]  # per optimiser step of this call

    def summary(self) -> str:
        mean = mean_defined(np.array(list(self.test_auroc.values())))
        mean = "undefined" if math.isnan(mean) else f"{mean:.3f}"
        return (f"{self.steps} steps, epoch {self.best_epoch} selected; test mean AUROC {mean}; "
                f"classifier: {self.classifier}; predictions: {self.predictions}")


def finetune(config: FinetuneConfig | str | os.PathLike, *, overrides: tuple[str, ...] = (), resume: bool = False,
             progress: bool = True) -> FinetuneResult:
    """Runs in the caller's process group if it has joined one, else in torchrun's, else alone."""
    if not isinstance(config, FinetuneConfig):
        config = load_config(config, overrides, kind=FinetuneConfig)
    from cxrfast.train.segment import Segmenting

    with joined_from_environment():
        task = Segmenting if config.task == "segmentation" else Finetuning
        return task(config, resume=resume, progress=progress).run()


def chosen_findings(data: LabelledImages, asked: list[str] | None) -> list[str]:
    """The findings asked for, else the competition five the labels have, else all of them."""
    if asked is not None:
        return list(asked)
    present = [name for name in COMPETITION_FINDINGS if name in data.table.findings]
    return present or data.findings


class Finetuning:
    def __init__(self, config: FinetuneConfig, *, resume: bool = False, progress: bool = True):
        config.check()
        timm_name(config.backbone)
        self.config = c = config
        data = LabelledImages.read(c.data, c.findings, c.display)
        self.findings = chosen_findings(data, c.findings)
        self.table, self.labels_file = data.table.select_findings(self.findings), data.labels_file
        try:
            targets, known = self.table.targets(c.uncertainty, c.uncertainty_per_finding)
        except ValueError as e:
            raise ConfigError(f"uncertainty: {e}") from e
        self.targets, self.known = torch.from_numpy(targets), torch.from_numpy(known)
        self.split = choose_split(self.table, self.labels_file, c)
        self._check_labels()
        pos_weight = positive_weights(self.targets[self.split.train], self.known[self.split.train],
                                      self.findings) if c.pos_weight else None
        self.device = resolve_device(c.device)
        torch.manual_seed(c.seed)  # the same initial weights on every rank
        backbone, self.init = initial_backbone(c.backbone, c.init, c.image_size, c.pool, data.channels)
        options = {"multi_label": not c.single_label, "pos_weight": pos_weight}
        if c.mode == "linear":
            self.backbone = backbone
            self.objective = Classification(classifier_for(backbone, len(self.findings)), self.findings, **options)
            train, self.validate, self.test = self._feature_rows(data, backbone)
        else:
            self.backbone = None
            backbone_factor = 1.0 if c.backbone_lr is None else c.backbone_lr / c.lr
            self.objective = Classification.for_backbone(backbone, self.findings, frozen_epochs=c.frozen_epochs,
                                                         epochs=c.epochs, backbone_lr_factor=backbone_factor,
                                                         layer_decay=c.layer_decay, **options)
            train = self._views(data, self.split.train, fine_tuning_augment(c.image_size, c.augment))
            self.validate, self.test = (self._views(data, rows) for rows in (self.split.validate, self.split.test))
        loader = EpochLoader(train, c.batch_size, workers=0 if c.mode == "linear" else c.workers, seed=c.seed)
        self.loop = TrainingLoop(c, self.objective, loader, run=Path(c.out), device=self.device, resume=resume,
                                 progress=progress, description="fine-tuning", select=self._validate)
        if self.loop.rank == 0 and not resume:
            self.split.write(self.table, self.loop.run_dir / SPLIT_FILE)

    def _views(self, data: LabelledImages, rows: np.ndarray, augment: ViewAugment | None = None) -> LabelledViews:
        return LabelledViews(data.images, self.targets.numpy(), self.known.numpy(), rows, augment=augment,
                             size=self.config.image_size, seed=self.config.seed)

    def _feature_rows(self, data: LabelledImages, backbone) -> list[FeatureRows]:
        """Linear mode: every used image's features, once, standardised as the training images'
        are, then the rows of each part."""
        parts = [self.split.train, self.split.validate, self.split.test]
        views = self._views(data, np.concatenate(parts))
        features = encode(backbone.to(self.device), views, batch_size=64, workers=self.config.workers,
                          device=self.device)
        bounds = np.cumsum([0, *map(len, parts)])
        self.standardization = Standardization.fit(features[:bounds[1]])
        features = self.standardization(features)
        return [FeatureRows(features[a:b], self._views(data, rows)) for a, b, rows in zip(bounds, bounds[1:], parts)]

    def _check_labels(self) -> None:
        """Each finding trainable from the chosen training images; single-label rows one class each."""
        where = f"{self.labels_file} (label_fraction {self.config.label_fraction}, split {self.config.split})"
        train = self.split.train
        if self.config.single_label:
            for rows in (train, self.split.validate, self.split.test):
                bad = np.flatnonzero(~self.known[rows].all(1).numpy() | (self.targets[rows].sum(1).numpy() != 1))
                if len(bad):
                    image = self.table.paths[rows[bad[0]]]
                    raise DataError(f"{self.labels_file}: {image}: a single_label task needs exactly one of "
                                    f"{', '.join(self.findings)} positive on each image ({len(bad)} images are not)")
        known, positive = self.known[train], (self.targets[train] > 0.5) & self.known[train]
        for f, name in enumerate(self.findings):
            if not positive[:, f].any() or not (known[:, f] & ~positive[:, f]).any():
                kind = "positive" if not positive[:, f].any() else "negative"
                raise DataError(f"{where}: no known {kind} of {name!r} among the {len(train)} training images; "
                                "label more images, raise the label fraction or leave the finding out")
        if self.config.select_on != "loss":
            validate = self.split.validate
            auroc = per_finding_auroc(np.zeros((len(validate), len(self.findings))),
                                      self.targets[validate].numpy(), self.known[validate].numpy())
            if np.isnan(auroc).all():
                raise DataError(f"{where}: no finding has both classes among the {len(validate)} validation images, "
                                "so no validation AUROC; set select_on=loss or label more images")

    def _validate(self, loop: TrainingLoop) -> float:
        """The selection value at an epoch's end (rank 0), logged to validation.csv."""
        loss, auroc = self._evaluate(self.validate)
        mean = mean_defined(auroc)
        log_epoch(loop.run_dir / VALIDATION_FILE, loop.epoch,
                  {"step": loop.step, "loss": loss, "mean_auroc": mean, **dict(zip(self.findings, auroc.tolist()))})
        return loss if self.config.select_on == "loss" else -mean

    def _evaluate(self, items) -> tuple[float, np.ndarray]:
        logits, rows = self._logits(items)
        loss = float(self.objective.loss(logits, self.targets[rows], self.known[rows]))
        scores = self.objective.scores(logits).numpy()
        return loss, per_finding_auroc(scores, self.targets[rows].numpy(), self.known[rows].numpy())

    def _logits(self, items):
        return self.objective.predict(items, batch_size=2 * self.config.batch_size, device=self.device,
                                      autocast=self.loop.autocast_dtype)

    def run(self) -> FinetuneResult:
        result = self.loop.run()
        run = self.loop.run_dir
        best = run / BEST
        if self.loop.best_epoch and best.is_file():  # the selected weights, on every rank
            self.objective.load_state_dict(load_checkpoint(best)["model"])
        parts = {"validate": self.validate, "test": self.test}
        scores = {name: self._scores(items) for name, items in parts.items()}
        val_scores, val_rows = scores["validate"]
        thresholds = per_finding(youden_threshold, val_scores, self.targets[val_rows].numpy(),
                                 self.known[val_rows].numpy())
        aurocs = {name: dict(zip(self.findings, per_finding_auroc(s, self.targets[r].numpy(),
                                                                  self.known[r].numpy()).tolist()))
                  for name, (s, r) in scores.items()}
        classifier = run / CLASSIFIER_FILE
        if self.loop.rank == 0:
            self._write_predictions(run / PREDICTIONS_FILE, scores)
            write_json(run / THRESHOLDS_FILE, dict(zip(self.findings, thresholds.tolist())))
            model = self.objective.model if self.backbone is None else \
                into_backbone(self.standardization.folded(self.objective.model.cpu()), self.backbone.cpu())
            export_encoder(model, classifier)
            self._write_summary(run / RUN_FILE, aurocs)
        return FinetuneResult(run, result.steps, self.loop.best_epoch, classifier, run / PREDICTIONS_FILE,
                              aurocs["validate"], aurocs["test"], dict(zip(self.findings, thresholds.tolist())),
                              result.losses)

    def _scores(self, items) -> tuple[np.ndarray, np.ndarray]:
        logits, rows = self._logits(items)
        return self.objective.scores(logits).double().numpy(), rows.numpy()

    def _write_predictions(self, path: Path, scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        rows = np.concatenate([r for _, r in scores.values()])
        splits = [name for name, (_, r) in scores.items() for _ in r]
        t = self.table
        Predictions([t.paths[k] for k in rows], [t.patients[k] for k in rows], splits, tuple(self.findings),
                    np.concatenate([s for s, _ in scores.values()]), t.values[rows]).write(path)

    def _write_summary(self, path: Path, aurocs: dict[str, dict[str, float]]) -> None:
        c, loop = self.config, self.loop
        summary = {"task": c.task, "mode": c.mode, "init": self.init, "findings": self.findings,
                   "single_label": c.single_label, "label_fraction": c.label_fraction,
                   "official_split": self.split.official,
                   "images": {name: len(getattr(self.split, name)) for name in ("train", "unused", "validate", "test")},
                   "epochs_run": loop.epoch, "stopped_early": loop.stopped, "best_epoch": loop.best_epoch,
                   "selected_on": c.select_on, "steps": loop.step,
                   **{f"{name}_mean_auroc": mean_defined(np.array(list(a.values()))) for name, a in aurocs.items()},
                   **{f"{name}_auroc": a for name, a in aurocs.items()}}
        write_json(path, summary)
