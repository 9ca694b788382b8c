"""One model's evaluation on one split of its `predictions.csv`, as a paper's table reports it:
per finding the numbers of cases, controls and unknown labels, the AUROC with its DeLong and its
bootstrap 95% CI, the average precision, and what the model does at operating points chosen on
the validation split (Youden's J, and fixed sensitivity and specificity) and applied here, the
AP and each rate with its percentile CI on the AUROC's replicates; the
mean AUROC over the findings that have one, with its bootstrap CI, naming those left out.

Only 1 and 0 are known targets: −1 (uncertain) and blank are left out of that finding, as
U-Ignore does. Thresholds are observed validation scores (positive iff score ≥ t), not pROC's
midpoints; the JSON says so. `evaluate_predictions` writes `metrics.json`, `metrics.csv`, the
predictions it used and the bootstrap replicates (`replicates.npz`), so that `cxrfast report` and
a later comparison can read them.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_json, write_text_atomically
from cxrfast.errors import DataError
from cxrfast.eval.bootstrap import bootstrap_interval
from cxrfast.eval.delong import delong_interval
from cxrfast.eval.operating_point import RATES, operating_point
from cxrfast.eval.predictions import Predictions
from cxrfast.eval.resamples import Resamples, draw_resamples
from cxrfast.eval.segmentation_evaluation import evaluate_segmentation, is_segmentation
from cxrfast.eval.threshold_bootstrap import average_precision_interval, rates_interval
from cxrfast.eval.thresholds import sensitivity_threshold, specificity_threshold, youden_threshold

METRICS_JSON, METRICS_CSV, PREDICTIONS_USED, REPLICATES_FILE = ("metrics.json", "metrics.csv", "predictions.csv",
                                                                 "replicates.npz")
SEGMENTATION_PREDICTIONS = "predictions_segmentation.csv"
THRESHOLD_KIND = "an observed validation score; positive iff score >= threshold"


@dataclass(frozen=True)
class EvaluationSettings:
    split: str = "test"
    threshold_split: str = "validate"
    replicates: int = 2000
    seed: int = 0
    level: float = 0.95
    sensitivity: float = 0.9  # the fixed operating points
    specificity: float = 0.9


def split_of(predictions: Predictions, name: str, path: str | os.PathLike) -> Predictions:
    part = predictions.split(name)
    if not part.images:
        found = ", ".join(sorted(set(predictions.splits)))
        raise DataError(f"{path}: no {name!r} rows (its splits: {found})")
    return part


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """scikit-learn's average precision (precision at each case, no interpolation); NaN without cases."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(positive, scores)) if positive.any() else math.nan


def _operating_points(validation: Predictions | None, test: Predictions, f: int, settings: EvaluationSettings,
                      resamples: Resamples):
    """The thresholds chosen on validation for finding f, applied to the test rows, each rate with
    its percentile CI over the test set's replicates."""
    choose = {"youden": (youden_threshold, ()), f"sensitivity_{settings.sensitivity:g}":
              (sensitivity_threshold, (settings.sensitivity,)), f"specificity_{settings.specificity:g}":
              (specificity_threshold, (settings.specificity,))}
    known = (test.targets[:, f] == 0) | (test.targets[:, f] == 1)
    scores, positive = test.scores[known, f], test.targets[known, f] == 1
    points = {}
    for name, (criterion, args) in choose.items():
        threshold = math.nan
        if validation is not None:
            v_known = (validation.targets[:, f] == 0) | (validation.targets[:, f] == 1)
            threshold = criterion(validation.scores[v_known, f], validation.targets[v_known, f], *args)
        points[name] = {**operating_point(scores, positive, threshold).as_dict(),
                        "ci": rates_interval(scores, positive, threshold, resamples.units[known], resamples, f,
                                             settings.level)}
    return points


def evaluate(predictions: Predictions, settings: EvaluationSettings = EvaluationSettings(),
             source: str | os.PathLike = "predictions",
             thresholds_from: Predictions | None = None) -> tuple[dict, Predictions, Resamples]:
    """(metrics, the rows evaluated, their bootstrap replicates) of `settings.split`, with the
    thresholds chosen on the `settings.threshold_split` rows of `thresholds_from` (by default
    `predictions` itself)."""
    test = split_of(predictions, settings.split, source)
    validation = (thresholds_from or predictions).split(settings.threshold_split)
    validation = validation if validation.images else None
    if validation is not None and validation.findings != test.findings:
        raise DataError(f"{source}: findings {', '.join(test.findings)}, but the thresholds' predictions have "
                        f"{', '.join(validation.findings)}")
    findings = test.findings
    delong = delong_interval(test.scores, test.targets, level=settings.level, findings=findings)
    resamples = draw_resamples(test.targets, patients=test.patients, replicates=settings.replicates,
                               seed=settings.seed, findings=findings)
    boot = bootstrap_interval(test.scores, test.targets, resamples, level=settings.level)
    per_finding = {}
    for f, name in enumerate(findings):
        known = (test.targets[:, f] == 0) | (test.targets[:, f] == 1)
        positive = test.targets[known, f] == 1
        per_finding[name] = {
            "cases": int(positive.sum()), "controls": int((~positive).sum()), "unknown": int((~known).sum()),
            "auroc": float(delong.auc[f]), "delong_ci": [float(delong.lower[f]), float(delong.upper[f])],
            "bootstrap_ci": [float(boot.lower[f]), float(boot.upper[f])],
            "average_precision": average_precision(test.scores[known, f], positive),
            "average_precision_ci": average_precision_interval(test.scores[known, f], positive,
                                                               resamples.units[known], resamples, f, settings.level),
            "operating_points": _operating_points(validation, test, f, settings, resamples)}
    defined = [name for name, d in zip(findings, boot.defined) if d]
    metrics = {
        "split": settings.split, "images": len(test.images), "patients": len(set(test.patients)),
        "level": settings.level,
        "bootstrap": {"replicates": settings.replicates, "seed": settings.seed, "clustered": resamples.clustered,
                      "redrawn": resamples.redrawn, "stratified": "by each finding's class", "ci": "percentile",
                      "file": REPLICATES_FILE},
        "thresholds": {"chosen_on": settings.threshold_split if validation is not None else None,
                       "kind": THRESHOLD_KIND},
        "findings": per_finding,
        "mean_auroc": {"value": boot.mean, "bootstrap_ci": [boot.mean_lower, boot.mean_upper], "findings": defined,
                       "left_out": [name for name in findings if name not in defined]},
    }
    return metrics, test, resamples


def predictions_file(path: str | os.PathLike) -> Path:
    """A predictions CSV, or a run folder's: `predictions.csv` (classification) or
    `predictions_segmentation.csv`."""
    path = Path(path)
    if not path.is_dir():
        return path
    return next((path / name for name in (PREDICTIONS_USED, SEGMENTATION_PREDICTIONS) if (path / name).is_file()),
                path / PREDICTIONS_USED)


def evaluate_predictions(path: str | os.PathLike, out: str | os.PathLike,
                         settings: EvaluationSettings = EvaluationSettings(),
                         thresholds_from: str | os.PathLike | None = None) -> Path:
    """Evaluate `path` (a predictions.csv, or a run folder holding one) into the folder `out`,
    thresholds chosen on `thresholds_from`'s validation rows (by default `path`'s); returns
    metrics.json's path. A segmentation run's predictions get its mean Dice instead."""
    out, path = Path(out), predictions_file(path)
    if path.is_file() and is_segmentation(path):
        return evaluate_segmentation(path, out, settings)
    chosen_on = Predictions.read(predictions_file(thresholds_from)) if thresholds_from is not None else None
    metrics, used, resamples = evaluate(Predictions.read(path), settings, path, chosen_on)
    out.mkdir(parents=True, exist_ok=True)
    used.write(out / PREDICTIONS_USED)
    resamples.save(out / REPLICATES_FILE)
    write_table(out / METRICS_CSV, *metrics_rows(metrics))
    source = {"predictions": str(path)} | ({"thresholds_from": str(predictions_file(thresholds_from))}
                                           if thresholds_from is not None else {})
    return write_json(out / METRICS_JSON, {**source, **metrics})


def metrics_rows(metrics: dict) -> tuple[list[str], list[list]]:
    """metrics.json as a table: one row per finding and one for the mean."""
    points = list(next(iter(metrics["findings"].values()))["operating_points"]) if metrics["findings"] else []
    header = ["finding", "cases", "controls", "unknown", "auroc", "delong_lower", "delong_upper", "bootstrap_lower",
              "bootstrap_upper", "average_precision",
              *[f"{p}_{k}" for p in points for k in ("threshold", *RATES)]]
    rows = []
    for name, m in metrics["findings"].items():
        row = [name, m["cases"], m["controls"], m["unknown"], m["auroc"], *m["delong_ci"], *m["bootstrap_ci"],
               m["average_precision"]]
        for p in points:
            row += [m["operating_points"][p][k] for k in ("threshold", *RATES)]
        rows.append(row)
    mean = metrics["mean_auroc"]
    rows.append(["mean", "", "", "", mean["value"], "", "", *mean["bootstrap_ci"], "", *[""] * (len(header) - 10)])
    return header, rows


def csv_cell(value):
    """A float as it round-trips (repr), an undefined one blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else value


def write_table(path: Path, header: list[str], rows: list[list]) -> Path:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows([[csv_cell(v) for v in row] for row in rows])
    return write_text_atomically(path, text.getvalue())
