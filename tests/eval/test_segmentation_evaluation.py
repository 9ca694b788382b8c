"""Segmentation runs through `evaluate`, `compare` and `report`: predictions_segmentation.csv read
back as written, the mean Dice and its CI equal to `bootstrap_dice` on the same seed, pairs
compared on the same images, and the report's table equal to the JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cxrfast.errors import DataError
from cxrfast.eval.comparison import compare_predictions
from cxrfast.eval.dice_bootstrap import bootstrap_dice
from cxrfast.eval.dice_predictions import DicePredictions
from cxrfast.eval.evaluation import EvaluationSettings, evaluate_predictions
from cxrfast.eval.report import write_report
from helpers.predictions import synthetic_predictions

SETTINGS = EvaluationSettings(replicates=150, seed=2)


def _run(folder, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    dice = np.clip(rng.normal(0.9 - shift, 0.04, 60), 0, 1)
    dice[[3, 30]] = math.nan  # empty ground truths
    folder.mkdir()
    splits = ["validate" if k < 20 else "test" for k in range(60)]
    DicePredictions([f"img{k}.png" for k in range(60)], [f"P{k // 2}" for k in range(60)], splits,
                    dice).write(folder / "predictions_segmentation.csv")
    return folder, dice


def test_evaluate_compare_and_report_segmentation_runs(tmp_path):
    (a, dice_a), (b, dice_b) = _run(tmp_path / "unet", 0), _run(tmp_path / "setr", 1, shift=0.05)
    again = DicePredictions.read(a / "predictions_segmentation.csv")
    np.testing.assert_array_equal(np.nan_to_num(again.dice, nan=-1), np.nan_to_num(dice_a, nan=-1))
    metrics = json.loads(evaluate_predictions(a, tmp_path / "eval", SETTINGS).read_text())
    patients = [f"P{k // 2}" for k in range(20, 60)]
    expected = bootstrap_dice(dice_a[20:], patients=patients, replicates=150, seed=2)
    assert metrics["task"] == "segmentation" and metrics["dice"]["empty_ground_truth"] == 1
    assert (metrics["dice"]["mean"], metrics["dice"]["bootstrap_ci"]) == (expected.mean, [expected.lower,
                                                                                             expected.upper])
    statistics = json.loads(compare_predictions([a, b], None, tmp_path / "cmp", SETTINGS).read_text())
    paired = bootstrap_dice(dice_a[20:], dice_b[20:], patients=patients, replicates=150, seed=2)
    (pair,) = statistics["comparisons"]
    assert (pair["a"], pair["b"], pair["difference"], pair["bootstrap_p"]) == ("unet", "setr", paired.difference,
                                                                               paired.p)
    page = write_report(tmp_path / "eval").read_text()
    assert f"{expected.mean:.3f}" in page and f"[{expected.lower:.3f}, {expected.upper:.3f}]" in page
    assert f"[{paired.difference_lower:.3f}, {paired.difference_upper:.3f}]" in write_report(tmp_path / "cmp").read_text()
    classifier = synthetic_predictions(0).write(tmp_path / "classifier.csv")
    with pytest.raises(DataError, match="segmentation runs with segmentation runs"):
        compare_predictions([a, classifier], None, tmp_path / "mixed", SETTINGS)
    (tmp_path / "bad.csv").write_text("image,patient_id,split,dice\nx,P,test,1.5\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 2: dice '1\.5' is outside \[0, 1\]"):
        DicePredictions.read(tmp_path / "bad.csv")
