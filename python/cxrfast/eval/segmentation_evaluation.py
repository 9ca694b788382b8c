"""A segmentation run's evaluation and the comparison of two or more, from their
`predictions_segmentation.csv`: the split's mean Dice with a bootstrap CI over its images (or
patients), the images without a Dice (empty ground truth) counted, never scored; and for every
pair of models on the same images, the difference of mean Dice with its CI and the paired p
(`cxrfast.eval.dice_bootstrap`). Written as `metrics.json` / `statistics.json` with
`"task": "segmentation"`, which `cxrfast report` reads."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_json
from cxrfast.errors import DataError
from cxrfast.eval.dice_bootstrap import bootstrap_dice
from cxrfast.eval.dice_predictions import DicePredictions

TASK = "segmentation"


def _split(predictions: DicePredictions, name: str, path) -> DicePredictions:
    part = predictions.split(name)
    if not part.images:
        raise DataError(f"{path}: no {name!r} rows (its splits: {', '.join(sorted(set(predictions.splits)))})")
    return part


def _bootstrap_note(settings, clustered: bool) -> dict:
    return {"replicates": settings.replicates, "seed": settings.seed, "clustered": clustered,
            "stratified": "none (no classes)", "ci": "percentile"}


def evaluate_segmentation(path: str | os.PathLike, out: str | os.PathLike, settings) -> Path:
    """metrics.json of `settings.split` of the predictions_segmentation.csv `path`."""
    part = _split(DicePredictions.read(path), settings.split, path)
    result = bootstrap_dice(part.dice, patients=part.patients, replicates=settings.replicates, seed=settings.seed,
                            level=settings.level)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clustered = len(set(part.patients)) < len(part.images)
    return write_json(out / "metrics.json", {
        "task": TASK, "predictions": str(path), "split": settings.split, "images": len(part.images),
        "patients": len(set(part.patients)), "level": settings.level,
        "bootstrap": _bootstrap_note(settings, clustered),
        "dice": {"mean": result.mean, "bootstrap_ci": [result.lower, result.upper], "scored": result.images,
                 "empty_ground_truth": int(np.isnan(part.dice).sum())}})


def compare_segmentation(paths: Sequence[Path], names: Sequence[str], out: str | os.PathLike, settings) -> Path:
    """statistics.json of every pair of the segmentation models of `paths` on the same images."""
    parts = [_split(DicePredictions.read(p), settings.split, p) for p in paths]
    first = parts[0]
    position = {image: k for k, image in enumerate(first.images)}
    dice = [first.dice]
    for part, path in zip(parts[1:], paths[1:]):
        if sorted(part.images) != sorted(first.images):
            raise DataError(f"{path}: not the same {settings.split} images as {paths[0]}")
        order = np.argsort([position[image] for image in part.images])
        dice.append(part.dice[order])
    models = {}
    for name, values in zip(names, dice):
        alone = bootstrap_dice(values, patients=first.patients, replicates=settings.replicates, seed=settings.seed,
                               level=settings.level)
        models[name] = {"mean": alone.mean, "bootstrap_ci": [alone.lower, alone.upper], "scored": alone.images}
    pairs = []
    for i, j in combinations(range(len(names)), 2):
        paired = bootstrap_dice(dice[i], dice[j], patients=first.patients, replicates=settings.replicates,
                                seed=settings.seed, level=settings.level)
        pairs.append({"a": names[i], "b": names[j], "difference": paired.difference,
                      "bootstrap_ci": [paired.difference_lower, paired.difference_upper], "bootstrap_p": paired.p})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clustered = len(set(first.patients)) < len(first.images)
    return write_json(out / "statistics.json", {
        "task": TASK, "predictions": dict(zip(names, map(str, paths))), "split": settings.split,
        "images": len(first.images), "patients": len(set(first.patients)), "level": settings.level,
        "alternative": "two-sided", "bootstrap": {**_bootstrap_note(settings, clustered),
                                                  "p": "(1 + #{replicates against}) / (B + 1), two-sided doubled"},
        "models": models, "comparisons": pairs})


def is_segmentation(path: Path) -> bool:
    """Whether a predictions CSV is a segmentation run's (a `dice` column, no scores)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    return "dice" in header and not any(c.endswith(" score") for c in header)

