"""A finished fine-tuning run scores another labelled set: on its own images the scores equal
those of its predictions.csv; `cxrfast evaluate RUN --data` evaluates them with the thresholds of
the run's validation split, and `cxrfast compare` takes run folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrfast.cli import main
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.synthetic import Finding, Findings
from cxrfast.errors import ConfigError
from cxrfast.eval import Predictions, youden_threshold
from cxrfast.train import FinetuneConfig, finetune, load_config
from cxrfast.train.predict import predict_with_run

FINDINGS = ["Cardiomegaly", "Pleural Effusion"]


@pytest.fixture(scope="module")
def runs(module_folder):
    root = module_folder("runs")
    labels = write_phantom_archive(root / "data", 40, rows=64, progress=False,
                                   findings=Findings({"Cardiomegaly": Finding(0.5), "Pleural Effusion": Finding(0.4)}))
    made = []
    for name, epochs in (("short", 1), ("longer", 2)):
        config = load_config(None, (), kind=FinetuneConfig, data=str(labels), out=str(root / name), backbone="resnet18",
                             image_size=32, epochs=epochs, batch_size=5, workers=0, findings=FINDINGS,
                             split_fractions={"train": 0.5, "validate": 0.25, "test": 0.25})
        made.append(finetune(config, progress=False).run)
    return labels, made


def test_scores_on_the_runs_own_images_equal_its_predictions(runs, tmp_path):
    labels, (run, _) = runs
    scored = Predictions.read(predict_with_run(run, labels, tmp_path / "scored.csv", device="cpu"))
    assert set(scored.splits) == {"external"} and scored.findings == tuple(FINDINGS) and len(scored.images) == 40
    own = Predictions.read(run / "predictions.csv")
    position = {image: k for k, image in enumerate(scored.images)}
    rows = [position[image] for image in own.images]
    np.testing.assert_allclose(scored.scores[rows], own.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.nan_to_num(scored.targets[rows], nan=9), np.nan_to_num(own.targets, nan=9))
    with pytest.raises(ConfigError, match="no config.yaml; give a finished cxrfast finetune run"):
        predict_with_run(tmp_path, labels, tmp_path / "x.csv")


def test_evaluate_and_compare_from_the_command_line(runs, tmp_path):
    labels, (short, longer) = runs
    assert main(["evaluate", str(short), "--out", str(tmp_path / "own"), "--replicates", "50"]) == 0
    own = json.loads((tmp_path / "own" / "metrics.json").read_text())
    assert own["split"] == "test" and own["images"] == 10
    assert main(["evaluate", str(short), "--data", str(labels), "--out", str(tmp_path / "ext"), "--replicates", "50",
                 "--device", "cpu"]) == 0
    external = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert external["split"] == "external" and external["images"] == 40
    validate = Predictions.read(short / "predictions.csv").split("validate")
    threshold = youden_threshold(validate.scores[:, 0], validate.targets[:, 0])
    assert external["findings"]["Cardiomegaly"]["operating_points"]["youden"]["threshold"] == pytest.approx(threshold)
    assert main(["compare", str(short), str(longer), "--out", str(tmp_path / "cmp"), "--replicates", "50"]) == 0
    statistics = json.loads((tmp_path / "cmp" / "statistics.json").read_text())
    assert [(p["a"], p["b"]) for p in statistics["comparisons"]] == [("short", "longer")]
    assert main(["evaluate", str(tmp_path), "--out", str(tmp_path / "none")]) == 2  # no predictions there
