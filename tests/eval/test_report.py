"""`cxrfast report`: the page parses as HTML, every image in it decodes, and every number in its
tables is the one in metrics.json / statistics.json (shown to 3 decimals, p to 3 digits)."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from cxrfast.cli import main
from cxrfast.errors import DataError
from cxrfast.eval.comparison import compare_predictions
from cxrfast.eval.evaluation import EvaluationSettings, evaluate_predictions
from cxrfast.eval.report import write_report
from helpers.predictions import FINDINGS, synthetic_predictions

SETTINGS = EvaluationSettings(replicates=100, seed=1)
VOID = {"meta", "img", "br"}


class Page(HTMLParser):
    """Tables as lists of rows of cell texts, the images' sources, and unbalanced tags."""

    def __init__(self):
        super().__init__()
        self.open, self.tables, self.images, self.cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag in VOID:
            return
        self.open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _page(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.open == [], f"unclosed tags {page.open}"
    for source in page.images:
        kind, data = source.split(",", 1)
        assert kind == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.load()
            assert image.width > 100 and image.height > 100
    return page


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", cell)]


def _close(cell: str, *values, digits=3):
    shown = _numbers(cell)
    expected = [v for v in values if v is not None]
    assert len(shown) == len(expected), (cell, values)
    for s, v in zip(shown, expected):
        assert s == pytest.approx(v, abs=0.51 * 10 ** -digits), (cell, values)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    a = synthetic_predictions(0).write(root / "a.csv")
    b = synthetic_predictions(1, signal=0.4, targets=synthetic_predictions(0).targets).write(root / "b.csv")
    evaluate_predictions(a, root / "evaluated", SETTINGS)
    compare_predictions([a, b], ["ours", "theirs"], root / "compared", SETTINGS)
    return root


def test_the_evaluation_page(folders):
    assert main(["report", str(folders / "evaluated")]) == 0
    page = _page(folders / "evaluated" / "report.html")
    metrics = json.loads((folders / "evaluated" / "metrics.json").read_text())
    (table,) = page.tables
    assert table[0][:4] == ["finding", "cases", "controls", "AUROC"]
    for row in table[1:-1]:
        m = metrics["findings"][row[0]]
        youden = m["operating_points"]["youden"]
        assert (int(row[1]), int(row[2])) == (m["cases"], m["controls"])
        _close(row[3], m["auroc"])
        _close(row[4], *m["delong_ci"])
        _close(row[5], *m["bootstrap_ci"])
        _close(row[6], m["average_precision"])
        for cell, key in zip(row[7:], ("threshold", "sensitivity", "specificity", "ppv", "npv")):
            _close(cell, youden[key])
    _close(table[-1][3], metrics["mean_auroc"]["value"])
    _close(table[-1][5], *metrics["mean_auroc"]["bootstrap_ci"])
    assert len(page.images) == 2  # the ROC curves of the findings that have an AUROC (not Nodule)
    markdown = (folders / "evaluated" / "report.md").read_text()
    assert markdown.startswith("| finding | cases |") and markdown.count("\n") == len(table) + 1


def test_the_comparison_page(folders):
    page = _page(write_report(folders / "compared"))
    statistics = json.loads((folders / "compared" / "statistics.json").read_text())
    (table,) = page.tables
    (pair,) = statistics["comparisons"]
    rows = {row[2]: row for row in table[1:]}
    assert set(rows) == {*FINDINGS, "mean"}
    for finding in FINDINGS:
        d, row = pair["findings"][finding], rows[finding]
        _close(row[3], statistics["models"]["ours"]["findings"][finding]["auroc"])
        _close(row[5], d["difference"])
        _close(row[6], *d["delong_ci"])
        for cell, key in zip((row[7], row[8], row[10], row[11]),
                             ("delong_p", "delong_p_holm", "bootstrap_p", "bootstrap_p_holm")):
            if d[key] is None:
                assert cell == "–"
            else:
                assert _numbers(cell)[0] == pytest.approx(d[key], rel=5e-3)
        _close(row[9], *d["bootstrap_ci"])
    _close(rows["mean"][9], *pair["mean_auroc"]["bootstrap_ci"])
    assert len(page.images) == 1  # the forest plot


def test_a_folder_without_results_is_named(tmp_path):
    with pytest.raises(DataError, match="no metrics.json or statistics.json"):
        write_report(tmp_path)
