"""A fine-tuned classifier on images it has not seen: a finished `cxrfast finetune` run (its
`config.yaml`, `classifier.safetensors` and the findings of its `predictions.csv`) scores every
image of another labelled set (another site's test set, a prepared cache or a manifest) on the
centred view it was validated on, and writes `predictions.csv` in the one schema the evaluation
reads, every row in the split `split`. The labels are written as the set gives them (−1 and blank
kept); the evaluation decides what is known."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cxrfast.data.datasets import LabelledViews
from cxrfast.data.labelled_images import LabelledImages
from cxrfast.errors import ConfigError
from cxrfast.eval.predictions import Predictions
from cxrfast.models import create_backbone
from cxrfast.models.backbones import read_state_dict
from cxrfast.train.classification import Classification
from cxrfast.train.config import FinetuneConfig, load_config
from cxrfast.train.finetune import CLASSIFIER_FILE, PREDICTIONS_FILE
from cxrfast.train.initial_weights import RUN_CONFIG
from cxrfast.train.loop import resolve_device


def predict_with_run(run: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
                     split: str = "external", batch_size: int = 64, device: str = "auto") -> Path:
    """Score every image of `data` with `run`'s classifier into the predictions CSV `out`."""
    run = Path(run)
    for name in (RUN_CONFIG, CLASSIFIER_FILE, PREDICTIONS_FILE):
        if not (run / name).is_file():
            raise ConfigError(f"{run}: no {name}; give a finished cxrfast finetune run")
    config = load_config(run / RUN_CONFIG, kind=FinetuneConfig)
    if config.task != "classification":
        raise ConfigError(f"{run}: a {config.task} run; cxrfast evaluate runs classifiers")
    findings = Predictions.read(run / PREDICTIONS_FILE).findings
    labelled = LabelledImages.read(data, list(findings), config.display)  # the windows the run was trained on
    model = create_backbone(config.backbone, image_size=config.image_size, pool=config.pool,
                            in_chans=labelled.channels)
    model.reset_classifier(len(findings))
    model.load_state_dict(read_state_dict(run / CLASSIFIER_FILE))
    table = labelled.table.select_findings(list(findings))
    targets, known = table.targets("ignore")
    views = LabelledViews(labelled.images, targets, known, np.arange(len(table)), size=config.image_size)
    objective = Classification(model, findings, multi_label=not config.single_label)
    target_device = resolve_device(device)
    objective.to(target_device)
    logits, rows = objective.predict(views, batch_size=batch_size, device=target_device)
    rows = rows.numpy()
    scores = objective.scores(logits).double().numpy()
    return Predictions([table.paths[k] for k in rows], [table.patients[k] for k in rows], [split] * len(rows),
                       findings, scores, table.values[rows]).write(out)

