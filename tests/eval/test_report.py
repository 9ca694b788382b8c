"""`cxrfast report`: the page parses as HTML, every image in it decodes, and every number in its
tables is the one in metrics.json / statistics.json (shown to 3 decimals, p to 3 digits)."""

from __future__ import annotations

import json

import pytest

from cxrfast.cli import main
from cxrfast.errors import DataError
from cxrfast.eval.comparison import compare_predictions
from cxrfast.eval.evaluation import EvaluationSettings, evaluate_predictions
from cxrfast.eval.report import write_report
from helpers.html_page import close, numbers, read_page
from helpers.predictions import FINDINGS, synthetic_predictions

SETTINGS = EvaluationSettings(replicates=100, seed=1)
@pytest.fixture(scope="module")
def folders(module_folder):
    root = module_folder("report")
    a = synthetic_predictions(0).write(root / "a.csv")
    b = synthetic_predictions(1, signal=0.4, targets=synthetic_predictions(0).targets).write(root / "b.csv")
    evaluate_predictions(a, root / "evaluated", SETTINGS)
    compare_predictions([a, b], ["ours", "theirs"], root / "compared", SETTINGS)
    return root


def test_the_evaluationread_page(folders):
    assert main(["report", str(folders / "evaluated")]) == 0
    page = read_page(folders / "evaluated" / "report.html")
    metrics = json.loads((folders / "evaluated" / "metrics.json").read_text())
    (table,) = page.tables
    assert table[0][:4] == ["finding", "cases", "controls", "AUROC"]
    for row in table[1:-1]:
        m = metrics["findings"][row[0]]
        youden = m["operating_points"]["youden"]
        assert (int(row[1]), int(row[2])) == (m["cases"], m["controls"])
        close(row[3], m["auroc"])
        close(row[4], *m["delong_ci"])
        close(row[5], *m["bootstrap_ci"])
        close(row[6], m["average_precision"], *m["average_precision_ci"])
        close(row[7], youden["threshold"])
        close(row[8], youden["accuracy"], *youden["ci"]["accuracy"])
        close(row[9], youden["f1"], *youden["ci"]["f1"])
        for cell, key in zip(row[10:], ("sensitivity", "specificity", "ppv", "npv")):
            close(cell, youden[key])
    close(table[-1][3], metrics["mean_auroc"]["value"])
    close(table[-1][5], *metrics["mean_auroc"]["bootstrap_ci"])
    assert len(page.images) == 2  # the ROC curves of the findings that have an AUROC (not Nodule)
    markdown = (folders / "evaluated" / "report.md").read_text()
    assert markdown.startswith("| finding | cases |") and markdown.count("\n") == len(table) + 1


def test_the_comparisonread_page(folders):
    page = read_page(write_report(folders / "compared"))
    statistics = json.loads((folders / "compared" / "statistics.json").read_text())
    (table,) = page.tables
    (pair,) = statistics["comparisons"]
    rows = {row[2]: row for row in table[1:]}
    assert set(rows) == {*FINDINGS, "mean"}
    for finding in FINDINGS:
        d, row = pair["findings"][finding], rows[finding]
        close(row[3], statistics["models"]["ours"]["findings"][finding]["auroc"])
        close(row[5], d["difference"])
        close(row[6], *d["delong_ci"])
        for cell, key in zip((row[7], row[8], row[10], row[11]),
                             ("delong_p", "delong_p_holm", "bootstrap_p", "bootstrap_p_holm")):
            if d[key] is None:
                assert cell == "–"
            else:
                assert numbers(cell)[0] == pytest.approx(d[key], rel=5e-3)
        close(row[9], *d["bootstrap_ci"])
    close(rows["mean"][9], *pair["mean_auroc"]["bootstrap_ci"])
    assert len(page.images) == 1  # the forest plot


def test_a_folder_without_results_is_named(tmp_path):
    with pytest.raises(DataError, match="no metrics.json, statistics.json or sweep.json"):
        write_report(tmp_path)
