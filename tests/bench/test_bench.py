"""`cxrfast bench`: the whole command at its tiny scale (every suite's groups measured with their
baselines in one run, the JSON holding a ratio for each), and the pieces it is made of against
their definitions: ratios, medians and quartiles, peak memory, a failing case."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.bench.report import Result, comparisons, markdown
from cxrfast.bench.runner import run_case
from cxrfast.bench.suites import SUITES, suite_cases
from cxrfast.bench.timing import peak_of_round, time_rounds
from cxrfast.cli import main
from cxrfast.errors import ConfigError


def test_every_suite_at_the_tiny_scale_gives_a_ratio_for_every_group(tmp_path):
    assert main(["bench", "all", "--scale", "tiny", "--device", "cpu", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["scale"] == "tiny" and report["device"] == "cpu"
    results = report["results"]
    assert {r["suite"] for r in results} == set(SUITES)
    assert not [r for r in results if r["error"]]
    # at this size every baseline fits; only an optional package's contender may be missing
    assert all(r["role"] == "cxrfast" and "is not installed" in r["skipped"] for r in results if r["skipped"])
    compared = {(c["suite"], c["group"]) for c in report["comparisons"]}
    assert compared == {(r["suite"], r["group"]) for r in results}
    for c in report["comparisons"]:  # each ratio is the two medians per item it names
        ours = next(r for r in results if (r["suite"], r["group"], r["label"]) == (c["suite"], c["group"], c["cxrfast"])
                    and r["role"] == "cxrfast")
        theirs = next(r for r in results if (r["suite"], r["group"], r["label"]) == (c["suite"], c["group"],
                                                                                     c["reference"])
                      and r["role"] == c["role"])
        mine, their = ours["median_ms"] / ours["items"], theirs["median_ms"] / theirs["items"]
        assert c["ratio"] == pytest.approx(their / mine if c["role"] == "baseline" else mine / their)
    table = (tmp_path / "bench.md").read_text()
    assert table.count("\n| ") == len(report["comparisons"]) + 1  # the header, then one row each


def _result(group: str, label: str, role: str, median_ms: float, items: int = 1, **memory) -> Result:
    return Result("s", group, label, role, items, "image", median_ms=median_ms, rounds=3, **memory)


def test_ratios_are_per_item_against_each_reference_of_the_group():
    results = [_result("g", "ours", "cxrfast", 10.0, items=5), _result("g", "naive", "baseline", 30.0, items=3),
               _result("g", "read", "floor", 1.0, items=1, peak_mib=4.0),
               _result("h", "ours", "cxrfast", 1.0), Result("s", "h", "naive", "baseline", 1, "image", skipped="memory")]
    found = {(c.group, c.reference): c for c in comparisons(results)}
    assert set(found) == {("g", "naive"), ("g", "read")}
    assert found["g", "naive"].ratio == pytest.approx((30 / 3) / (10 / 5)) and found["g", "naive"].role == "baseline"
    assert found["g", "read"].ratio == pytest.approx((10 / 5) / 1.0)
    assert found["g", "read"].text.startswith("2.00× the floor") and found["g", "naive"].text == "5.00× faster"
    slower = comparisons([_result("g", "ours", "cxrfast", 4.0), _result("g", "naive", "baseline", 1.0)])
    assert slower[0].ratio == pytest.approx(0.25) and slower[0].text == "4.00× slower"
    assert "Not run at this size:\n- s | h | naive: memory" in markdown(results, {"CPU": "test"})


def test_median_and_quartiles_of_the_rounds():
    durations = iter([0.0, 0.15, 0.05, 0.25, 0.1, 0.2])  # the warm-up round first

    def run():
        import time

        time.sleep(next(durations))

    timing = time_rounds(run, rounds=5, warmup=1)
    measured = [0.15, 0.05, 0.25, 0.1, 0.2]
    q = statistics.quantiles(measured, n=4)
    assert timing.rounds == 5
    assert timing.median_s == pytest.approx(0.15, abs=0.03)
    assert timing.iqr_s == pytest.approx(q[2] - q[0], abs=0.03)


def test_peak_memory_of_a_round_sees_what_it_allocates():
    def run():
        block = np.ones(200 * 2**20, dtype=np.uint8)  # 200 MiB, every page touched
        return int(block[::4096].sum())

    assert 190 <= peak_of_round(run) <= 260


def test_a_failing_case_is_a_failure_row_and_the_others_still_run(tmp_path, capsys):
    def broken(workspace):
        raise ValueError("no such file")

    bad = Case("s", "g", "ours", "cxrfast", 1, broken)
    good = Case("s", "g", "naive", "baseline", 1, lambda workspace: Step(lambda: None), rounds=2)
    workspace = Workspace(tmp_path)
    results = [run_case(bad, workspace, "tiny"), run_case(good, workspace, "tiny")]
    assert results[0].error == "ValueError: no such file" and results[0].median_ms is None
    assert results[1].error is None and results[1].rounds == 2
    assert comparisons(results) == []
    assert "Failed:\n- s | g | ours: ValueError: no such file" in markdown(results, {})


def test_without_suites_named_the_command_runs_all(monkeypatch, tmp_path):
    import cxrfast.bench.runner

    asked = []
    monkeypatch.setattr(cxrfast.bench.runner, "run_bench", lambda *args: asked.append(args) or [])
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    assert main(["bench", "eval", "dicom", "eval", "--device", "cpu", "--out", str(tmp_path)]) == 0
    assert asked == [(list(SUITES), "quick", "cpu", tmp_path), (["eval", "dicom"], "full", "cpu", tmp_path)]
    with pytest.raises(SystemExit):
        main(["bench", "gpu"])


def test_unknown_suites_and_scales_are_named():
    with pytest.raises(ConfigError, match="no benchmark suite 'gpu'"):
        suite_cases("gpu", "tiny", "cpu")
    with pytest.raises(ConfigError, match="no benchmark scale 'huge'"):
        suite_cases("eval", "huge", "cpu")
