"""`evaluate_predictions` and `compare_predictions` on predictions.csv files: every number they
write equals the statistic computed directly (DeLong, the bootstrap on the same seed, scikit-
learn's average precision, thresholds chosen on validation and applied to test, Holm and BH),
the CSVs equal the JSON, models are matched by image id, and mismatched inputs are errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cxrfast.errors import DataError
from cxrfast.eval import (Predictions, benjamini_hochberg, bootstrap_interval, bootstrap_test, delong_interval,
                          delong_test, draw_resamples, holm, operating_point, youden_threshold)
from cxrfast.eval.comparison import compare_predictions
from cxrfast.eval.evaluation import EvaluationSettings, evaluate_predictions
from cxrfast.eval.operating_point import RATES
from cxrfast.eval.resamples import Resamples
from helpers.predictions import FINDINGS, synthetic_predictions

SETTINGS = EvaluationSettings(replicates=200, seed=3)


@pytest.fixture(scope="module")
def written(module_folder):
    out = module_folder("predictions")
    a = synthetic_predictions(0)
    b = synthetic_predictions(1, signal=0.5, targets=a.targets)
    return a.write(out / "a.csv"), b.write(out / "b.csv"), a, b


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_metrics_equal_the_statistics_computed_directly(written, tmp_path):
    from sklearn.metrics import average_precision_score

    path, _, a, _ = written
    metrics = json.loads(evaluate_predictions(path, tmp_path, SETTINGS).read_text())
    test, validate = a.split("test"), a.split("validate")
    delong = delong_interval(test.scores, test.targets)
    resamples = draw_resamples(test.targets, patients=test.patients, replicates=200, seed=3)
    boot = bootstrap_interval(test.scores, test.targets, resamples)
    assert (metrics["split"], metrics["images"], metrics["patients"]) == ("test", 160, 80)
    assert metrics["bootstrap"]["clustered"] and metrics["mean_auroc"]["left_out"] == ["Nodule"]
    for f, name in enumerate(FINDINGS[:2]):
        m = metrics["findings"][name]
        known = (test.targets[:, f] == 0) | (test.targets[:, f] == 1)
        positive = test.targets[known, f] == 1
        assert (m["cases"], m["controls"], m["unknown"]) == (positive.sum(), (~positive).sum(), (~known).sum())
        assert (m["auroc"], m["delong_ci"]) == (delong.auc[f], [delong.lower[f], delong.upper[f]])
        assert m["bootstrap_ci"] == [boot.lower[f], boot.upper[f]]
        assert m["average_precision"] == pytest.approx(average_precision_score(positive, test.scores[known, f]))
        v_known = (validate.targets[:, f] == 0) | (validate.targets[:, f] == 1)
        threshold = youden_threshold(validate.scores[v_known, f], validate.targets[v_known, f])
        point = dict(m["operating_points"]["youden"])
        assert set(point.pop("ci")) == set(RATES)  # the CIs: tests/eval/test_threshold_bootstrap.py
        assert point == operating_point(test.scores[known, f], positive, threshold).as_dict()
    assert metrics["findings"]["Nodule"]["auroc"] is None and metrics["findings"]["Nodule"]["delong_ci"] == [None] * 2
    assert metrics["mean_auroc"]["value"] == pytest.approx(boot.mean)
    assert metrics["mean_auroc"]["bootstrap_ci"] == [boot.mean_lower, boot.mean_upper]
    assert metrics["thresholds"] == {"chosen_on": "validate",
                                     "kind": "an observed validation score; positive iff score >= threshold"}
    rows = {r["finding"]: r for r in _rows(tmp_path / "metrics.csv")}
    assert float(rows["Edema"]["bootstrap_upper"]) == metrics["findings"]["Edema"]["bootstrap_ci"][1]
    assert float(rows["Edema"]["youden_sensitivity"]) == metrics["findings"]["Edema"]["operating_points"]["youden"][
        "sensitivity"]
    assert rows["Nodule"]["auroc"] == "" and float(rows["mean"]["auroc"]) == metrics["mean_auroc"]["value"]
    used = Predictions.read(tmp_path / "predictions.csv")
    assert used.images == test.images and set(used.splits) == {"test"}
    assert np.array_equal(Resamples.load(tmp_path / "replicates.npz").random, resamples.random)


def test_a_split_that_is_not_there_is_named(written, tmp_path):
    path, *_ = written
    with pytest.raises(DataError, match=r"a\.csv: no 'external' rows \(its splits: test, validate\)"):
        evaluate_predictions(path, tmp_path, EvaluationSettings(split="external"))
    alone = synthetic_predictions(2)
    only_test = Predictions(alone.images[80:], alone.patients[80:], alone.splits[80:], FINDINGS, alone.scores[80:],
                            alone.targets[80:]).write(tmp_path / "test_only.csv")
    metrics = json.loads(evaluate_predictions(only_test, tmp_path / "out", SETTINGS).read_text())
    assert metrics["thresholds"]["chosen_on"] is None  # no validation rows: no threshold, and it says so
    assert metrics["findings"]["Edema"]["operating_points"]["youden"]["threshold"] is None


def test_the_comparison_equals_delong_and_the_bootstrap(written, tmp_path):
    path_a, path_b, a, b = written
    statistics = json.loads(compare_predictions([path_a, path_b], ["ours", "baseline"], tmp_path, SETTINGS).read_text())
    test_a, test_b = a.split("test"), b.split("test")
    delong = delong_test(test_a.scores, test_b.scores, test_a.targets)
    resamples = draw_resamples(test_a.targets, patients=test_a.patients, replicates=200, seed=3)
    boot = bootstrap_test(test_a.scores, test_b.scores, test_a.targets, resamples)
    (pair,) = statistics["comparisons"]
    assert (pair["a"], pair["b"]) == ("ours", "baseline")
    for f, name in enumerate(FINDINGS[:2]):
        d = pair["findings"][name]
        assert (d["difference"], d["delong_z"], d["delong_p"]) == (delong.difference[f], delong.z[f], delong.p[f])
        assert d["delong_ci"] == [delong.lower[f], delong.upper[f]]
        assert (d["bootstrap_ci"], d["bootstrap_p"]) == ([boot.lower[f], boot.upper[f]], boot.p[f])
        assert d["delong_p_holm"] == pytest.approx(holm(delong.p)[f])
        assert d["bootstrap_p_bh"] == pytest.approx(benjamini_hochberg(boot.p)[f])
    assert pair["mean_auroc"]["bootstrap_p"] == boot.mean_p and pair["findings"]["Nodule"]["delong_p"] is None
    rows = _rows(tmp_path / "comparison.csv")
    assert [r["finding"] for r in rows] == [*FINDINGS, "mean"]
    assert float(rows[1]["bootstrap_p_holm"]) == pair["findings"]["Edema"]["bootstrap_p_holm"]


def test_models_are_matched_by_image_and_must_share_images_and_labels(written, tmp_path):
    path_a, _, a, b = written
    order = np.random.default_rng(0).permutation(len(b.images))
    shuffled = Predictions([b.images[k] for k in order], [b.patients[k] for k in order], [b.splits[k] for k in order],
                           FINDINGS, b.scores[order], b.targets[order]).write(tmp_path / "shuffled.csv")
    straight = json.loads(compare_predictions([path_a, written[1]], None, tmp_path / "x", SETTINGS).read_text())
    matched = json.loads(compare_predictions([path_a, shuffled], None, tmp_path / "y", SETTINGS).read_text())
    assert matched["comparisons"][0]["findings"] == straight["comparisons"][0]["findings"]
    fewer = Predictions(b.images[:-3], b.patients[:-3], b.splits[:-3], FINDINGS, b.scores[:-3], b.targets[:-3])
    with pytest.raises(DataError, match=r"fewer\.csv: not the same images as .*a\.csv: it lacks 3 \(img237"):
        compare_predictions([path_a, fewer.write(tmp_path / "fewer.csv")], None, tmp_path / "z", SETTINGS)
    relabelled = b.targets.copy()
    relabelled[100, 0] = 1 - relabelled[100, 0] if relabelled[100, 0] in (0, 1) else 1
    other = Predictions(b.images, b.patients, b.splits, FINDINGS, b.scores, relabelled).write(tmp_path / "other.csv")
    with pytest.raises(DataError, match=r"other\.csv: 1 images' targets differ .*\(img100\.dcm\)"):
        compare_predictions([path_a, other], None, tmp_path / "w", SETTINGS)
    with pytest.raises(DataError, match="distinct names"):
        compare_predictions([path_a, path_a], ["same", "same"], tmp_path / "v", SETTINGS)


def test_three_models_give_every_pair(written, tmp_path):
    path_a, path_b, a, _ = written
    c = synthetic_predictions(5, signal=2.0, targets=a.targets).write(tmp_path / "c.csv")
    statistics = json.loads(compare_predictions([path_a, path_b, c], ["a", "b", "c"], tmp_path, SETTINGS).read_text())
    assert [(p["a"], p["b"]) for p in statistics["comparisons"]] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert set(statistics["models"]) == {"a", "b", "c"}
