"""`cxrfast sweep`: a grid of arms × label fractions × seeds on tiny phantoms; every done cell's
evaluation in the results, a failing cell reported while the others go on, reruns that skip what
is done, shards whose results equal one run's, and a sweep killed mid-way that finishes with the
same results as an uninterrupted one."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from cxrfast.cli import main
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.synthetic import Finding, Findings
from cxrfast.errors import ConfigError
from cxrfast.models import create_backbone, export_encoder
from cxrfast.train.sweep import load_sweep, run_sweep


@pytest.fixture(scope="module")
def setting(module_folder):
    root = module_folder("sweep")
    labels = write_phantom_archive(root / "data", 40, rows=64, progress=False,
                                   findings=Findings({"Cardiomegaly": Finding(0.5), "Pleural Effusion": Finding(0.4)}))
    torch.manual_seed(5)
    encoder = export_encoder(create_backbone("resnet18"), root / "encoder.safetensors")
    return root, labels, encoder


def _config(root, labels, encoder, out, broken=True, arms=None, seeds="[0]"):
    arms = arms or {"random": "{init = 'random'}", "encoder": f"{{init = '{encoder}'}}"}
    if broken:
        (root / "not-a-run").mkdir(exist_ok=True)  # exists, so the sweep starts; the cell fails on it
        arms["broken"] = f"{{init = '{root / 'not-a-run'}'}}"
    text = "\n".join([
        f"data = '{labels}'", f"out = '{out}'", "label_fractions = [0.5, 1.0]", f"seeds = {seeds}", "replicates = 50",
        "[arms]", *[f"{name} = {table}" for name, table in arms.items()],
        "[finetune]", "backbone = 'resnet18'", "mode = 'linear'", "image_size = 32", "epochs = 2", "batch_size = 5",
        "workers = 0", "checkpoint_every = 1", "findings = ['Cardiomegaly', 'Pleural Effusion']",
        "split_fractions = {train = 0.5, validate = 0.25, test = 0.25}"])
    path = out.parent / f"{out.name}.toml"
    path.write_text(text + "\n")
    return path


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_sweep_runs_its_cells_reports_failures_and_resumes(setting, tmp_path):
    root, labels, encoder = setting
    config = load_sweep(_config(root, labels, encoder, tmp_path / "sweep"))
    report = run_sweep(config)
    assert sorted(report.done) == ["encoder/fraction-0.5/seed-0", "encoder/fraction-1/seed-0",
                                   "random/fraction-0.5/seed-0", "random/fraction-1/seed-0"]
    assert set(report.failed) == {"broken/fraction-0.5/seed-0", "broken/fraction-1/seed-0"}
    assert "not-a-run" in report.failed["broken/fraction-1/seed-0"]
    results = _rows(tmp_path / "sweep" / "results.csv")
    assert [(r["arm"], r["label_fraction"]) for r in results] == [("random", "0.5"), ("random", "1.0"),
                                                                   ("encoder", "0.5"), ("encoder", "1.0")]
    for row in results:  # each row is its cell's evaluation
        cell = tmp_path / "sweep" / "cells" / row["arm"] / f"fraction-{float(row['label_fraction']):g}" / "seed-0"
        metrics = json.loads((cell / "evaluation" / "metrics.json").read_text())
        assert metrics["mean_auroc"]["value"] == float(row["mean_auroc"])
        assert not list(cell.glob("checkpoint-*.pt")) and (cell / "classifier.safetensors").is_file()
    summary = _rows(tmp_path / "sweep" / "summary.csv")
    assert [(r["arm"], r["seeds_done"]) for r in summary][:2] == [("random", "1"), ("random", "1")]
    again = run_sweep(config)  # done cells are skipped; failed ones are tried again
    assert sorted(again.skipped) == sorted(report.done) and set(again.failed) == set(report.failed)


def test_shards_together_equal_one_run(setting, tmp_path):
    root, labels, encoder = setting
    whole = load_sweep(_config(root, labels, encoder, tmp_path / "whole", broken=False))
    run_sweep(whole)
    shared = _config(root, labels, encoder, tmp_path / "shared", broken=False)
    assert main(["sweep", str(shared), "--shard", "1/2"]) == 0
    assert len(_rows(tmp_path / "shared" / "results.csv")) == 2
    assert main(["sweep", str(shared), "--shard", "2/2"]) == 0
    assert (tmp_path / "shared" / "results.csv").read_text() == (tmp_path / "whole" / "results.csv").read_text()
    assert main(["sweep", str(shared), "--dry-run"]) == 0
    with pytest.raises(SystemExit):
        main(["sweep", str(shared), "--shard", "3/2"])


def test_a_killed_sweep_finishes_with_the_same_results(setting, tmp_path, one_thread):
    root, labels, encoder = setting
    run_sweep(load_sweep(_config(root, labels, encoder, tmp_path / "whole", broken=False)))
    killed = _config(root, labels, encoder, tmp_path / "killed", broken=False)
    process = subprocess.Popen([sys.executable, "-m", "cxrfast.cli", "sweep", str(killed)], env=one_thread,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = tmp_path / "killed" / "cells" / "random" / "fraction-1" / "seed-0"
    deadline = time.monotonic() + 300
    while not list(second.glob("checkpoint-*.pt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    assert main(["sweep", str(killed)]) == 0
    assert (tmp_path / "killed" / "results.csv").read_text() == (tmp_path / "whole" / "results.csv").read_text()


def test_bad_sweeps_are_refused_before_any_cell(tmp_path):
    bad = tmp_path / "bad.toml"
    for text, message in (("data = 'x'\nout = 'y'\n", "name at least one arm"),
                          ("data = 'x'\nout = 'y'\n[arms]\na = {mode = 'linear'}\n", "arms.a: a table with init"),
                          ("data = 'x'\nout = 'y'\nlabel_fractions = [0, 1]\n[arms]\na = {init = 'random'}\n",
                           r"label_fractions must be in \(0, 1\]"),
                          ("data = 'x'\nout = 'y'\n[finetune]\nseed = 3\n[arms]\na = {init = 'random'}\n",
                           "finetune.seed: set by the sweep"),
                          ("data = 'x'\nout = 'y'\nbaseline = 'b'\n[arms]\na = {init = 'random'}\n",
                           "baseline 'b' is not one of the arms"),
                          (f"data = '{tmp_path}'\nout = 'y'\n[arms]\na = {{init = 'nowhere.pt'}}\n",
                           "arms.a.init: nowhere.pt does not exist"),
                          (f"data = '{tmp_path}'\nout = 'y'\n[arms]\na = {{pretrain = {{data = 'none'}}}}\n",
                           "arms.a.pretrain.data: none does not exist"),
                          ("data = 'nowhere'\nout = 'y'\n[arms]\na = {init = 'random'}\n",
                           "data: nowhere does not exist"),
                          ("data = 'x'\nout = 'y'\n[arms]\na = {pretrain = {out = 'z'}}\n",
                           r"arms.a.pretrain.out: set by the sweep \(pretrain/a\)")):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_sweep(bad)


def test_the_comparisons_equal_cxrfast_compare_on_the_same_cells(setting, tmp_path):
    from cxrfast.eval.comparison import compare_predictions
    from cxrfast.eval.evaluation import EvaluationSettings
    from cxrfast.eval.multiple_comparisons import benjamini_hochberg, holm

    root, labels, encoder = setting
    run_sweep(load_sweep(_config(root, labels, encoder, tmp_path / "sweep", broken=False)))
    rows = _rows(tmp_path / "sweep" / "comparisons.csv")
    per_finding = _rows(tmp_path / "sweep" / "finding_comparisons.csv")
    assert [(r["arm"], r["baseline"], r["label_fraction"]) for r in rows] == [("encoder", "random", "0.5"),
                                                                              ("encoder", "random", "1.0")]
    cells = tmp_path / "sweep" / "cells"
    for row in rows:
        fraction = f"fraction-{float(row['label_fraction']):g}"
        statistics = json.loads(compare_predictions([cells / "encoder" / fraction / "seed-0",
                                                     cells / "random" / fraction / "seed-0"], None,
                                                    tmp_path / "cmp" / fraction,
                                                    EvaluationSettings(replicates=50, seed=0)).read_text())
        mean = statistics["comparisons"][0]["mean_auroc"]
        assert (float(row["mean_auroc_difference"]), float(row["bootstrap_p"])) == (mean["difference"],
                                                                                    mean["bootstrap_p"])
        assert [float(row["ci_lower"]), float(row["ci_upper"])] == mean["bootstrap_ci"]
        for finding in (r for r in per_finding if r["label_fraction"] == row["label_fraction"]):
            d = statistics["comparisons"][0]["findings"][finding["finding"]]
            assert (float(finding["auroc_difference"]), float(finding["delong_p"])) == (d["difference"], d["delong_p"])
            assert [float(finding["delong_lower"]), float(finding["delong_upper"])] == d["delong_ci"]
    p = [float(r["bootstrap_p"]) for r in rows]
    assert [float(r["bootstrap_p_holm"]) for r in rows] == pytest.approx(list(holm(p)))
    p = [float(r["delong_p"]) for r in per_finding]  # corrected across all of the sweep's per-finding tests
    assert len(p) == 4 and [float(r["delong_p_holm"]) for r in per_finding] == pytest.approx(list(holm(p)))
    assert [float(r["delong_p_bh"]) for r in per_finding] == pytest.approx(list(benjamini_hochberg(p)))
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert len(sweep["cells"]) == 4 and sweep["baseline"] == "random"


def test_the_report_of_a_sweep(setting, tmp_path):
    from helpers.html_page import Page, close, read_page

    root, labels, encoder = setting
    config = _config(root, labels, encoder, tmp_path / "sweep", broken=False)
    run_sweep(load_sweep(config))
    assert main(["report", str(tmp_path / "sweep")]) == 0
    page = read_page(tmp_path / "sweep" / "report.html")
    assert isinstance(page, Page) and len(page.images) == 1  # the label-efficiency plot
    summary, comparisons, by_finding, delong = page.tables
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    for row, expected in zip(summary[1:], sweep["summary"]):
        assert (row[0], float(row[1])) == (expected["arm"], expected["label_fraction"])
        close(row[3], expected["mean_auroc"])
        close(row[5], expected["ci_lower"], expected["ci_upper"])
    for row, expected in zip(comparisons[1:], sweep["comparisons"]):
        close(row[4], expected["mean_auroc_difference"])
        close(row[5], *expected["mean_auroc_bootstrap_ci"])
    assert by_finding[0] == ["arm", "label fraction", "Cardiomegaly", "Pleural Effusion"]
    results = _rows(tmp_path / "sweep" / "results.csv")  # one seed: each cell's own AUROC
    assert [row[2:] for row in by_finding[1:]] == [[f"{float(r[f'{f} auroc']):.3f}" for f in by_finding[0][2:]]
                                                   for r in results]
    assert len(delong) == 1 + 4
    for row, expected in zip(delong[1:], _rows(tmp_path / "sweep" / "finding_comparisons.csv")):
        assert row[4] == expected["finding"]
        close(row[5], float(expected["auroc_difference"]))
        close(row[7], float(expected["delong_p"]))


def test_a_pretraining_arm_is_run_once_and_reused(setting, tmp_path):
    root, labels, _ = setting
    spark = (f"{{pretrain = {{method = 'spark', data = '{labels}', backbone = 'resnet18', image_size = 32, "
             "epochs = 1, batch_size = 8, workers = 0}}")
    (tmp_path / "no-images").mkdir()
    missing = f"{{pretrain = {{method = 'simclr', data = '{tmp_path / 'no-images'}', backbone = 'resnet18'}}}}"
    config = load_sweep(_config(root, labels, None, tmp_path / "sweep", broken=False,
                                arms={"random": "{init = 'random'}", "spark": spark, "missing": missing}))
    report = run_sweep(config)
    assert len(report.done) == 4 and set(report.failed) == {"missing/fraction-0.5/seed-0", "missing/fraction-1/seed-0"}
    assert all(e.startswith("pretraining failed:") and "no-images" in e for e in report.failed.values())
    encoder = tmp_path / "sweep" / "pretrain" / "spark" / "encoder.safetensors"
    assert not list(encoder.parent.glob("*.pt"))  # the cells need the encoder only
    made = encoder.stat().st_mtime_ns
    run = json.loads((tmp_path / "sweep" / "cells" / "spark" / "fraction-1" / "seed-0" / "run.json").read_text())
    assert run["init"]["init"] == "pretraining run" and run["init"]["path"] == str(encoder.resolve())
    (tmp_path / "sweep" / "cells" / "spark" / "fraction-1" / "seed-0" / "cell.json").unlink()  # redo one cell
    assert run_sweep(config).done == ["spark/fraction-1/seed-0"] and encoder.stat().st_mtime_ns == made


def test_parallel_jobs_give_the_results_of_one_process(setting, tmp_path, one_thread):
    """2 arms × 2 fractions × 2 seeds, one cell at a time and two at a time (each in its own
    process with one thread, as here): the same results; and the means over seeds."""
    from statistics import mean, stdev

    root, labels, encoder = setting
    run_sweep(load_sweep(_config(root, labels, encoder, tmp_path / "one", broken=False, seeds="[0, 1]")))
    assert main(["sweep", str(_config(root, labels, encoder, tmp_path / "two", broken=False, seeds="[0, 1]")),
                 "--jobs", "2"]) == 0
    for name in ("results.csv", "summary.csv", "findings.csv", "comparisons.csv", "finding_comparisons.csv"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text(), name
    results = _rows(tmp_path / "one" / "results.csv")
    assert len(results) == 8
    for row in _rows(tmp_path / "one" / "findings.csv"):
        values = [float(r[f"{row['finding']} auroc"]) for r in results
                  if (r["arm"], r["label_fraction"]) == (row["arm"], row["label_fraction"])]
        assert row["seeds_done"] == "2" and float(row["mean_auroc"]) == pytest.approx(mean(values))
        assert float(row["sd_over_seeds"]) == pytest.approx(stdev(values))
