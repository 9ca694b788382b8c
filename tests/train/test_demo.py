"""`cxrfast demo` on a smaller study: SparK pretrained on the phantoms beats random
initialisation at the smallest label fraction, on the same test images (paired bootstrap of the
mean AUROC, and DeLong for a finding), and the printed table and the report carry the sweep's
numbers."""

from __future__ import annotations

import io
import json

from rich.console import Console

from cxrfast.train.demo import DemoSettings, run_demo


def test_the_demo_study_shows_pretraining_beat_random_initialisation(tmp_path):
    settings = DemoSettings(images=600, epochs=6, methods=("spark",), fractions=(0.3, 1.0), replicates=500)
    screen = io.StringIO()
    results = run_demo(tmp_path / "demo", settings, Console(file=screen, width=200))
    assert results == json.loads((tmp_path / "demo" / "sweep" / "sweep.json").read_text())
    (smallest, _) = sorted(results["comparisons"], key=lambda c: c["label_fraction"])
    assert smallest["arm"] == "spark" and smallest["label_fraction"] == 0.3
    assert smallest["mean_auroc_difference"] > 0 and smallest["mean_auroc_bootstrap_p"] < 0.05
    delong = [c for c in results["finding_comparisons"] if c["label_fraction"] == 0.3]
    assert any(c["auroc_difference"] > 0 and c["delong_p"] < 0.05 for c in delong)
    printed = screen.getvalue()
    for row in results["summary"]:
        assert f"{row['mean_auroc']:.3f}" in printed
    assert f"{smallest['mean_auroc_difference']:.3f}" in printed and "report.html" in printed
    assert (tmp_path / "demo" / "sweep" / "report.html").is_file()
