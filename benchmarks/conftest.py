"""pytest-benchmark over cxrfast's shipped benchmarks (`cxrfast.bench`): each bench_<suite>.py
holds `suite_test(suite)`, a test over its suite's full-scale cases, so `make bench` and
`cxrfast bench` time the same steps; after pytest-benchmark's table the run prints
cxrfast.bench's ratio table from pytest-benchmark's medians and saves it as markdown in
build/benchmarks/<suites>.md for BENCHMARKS.md. CXRFAST_BENCH_SCALE=quick (or tiny) runs the smaller sizes instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxrfast.bench.case import Case, Workspace, case_settings
from cxrfast.bench.report import Result, machine, markdown
from cxrfast.bench.suites import suite_cases
from cxrfast.bench.timing import peak_in_fresh_interpreter

SCALE = os.environ.get("CXRFAST_BENCH_SCALE", "full")
RESULTS: list[Result] = []


def suite_test(suite: str):
    """The test a bench_<suite>.py holds: one pytest-benchmark per case of the suite."""

    @pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in suite_cases(suite, SCALE, "cpu")])
    def test(bench_case, case):
        bench_case(case)

    return test


@pytest.fixture(scope="session")
def workspaces(tmp_path_factory):
    built: dict[str, Workspace] = {}

    def workspace(suite: str) -> Workspace:
        if suite not in built:
            built[suite] = Workspace(tmp_path_factory.mktemp(suite))
        return built[suite]

    return workspace


@pytest.fixture
def bench_case(benchmark, workspaces):
    """bench_case(case): time the case's rounds with pytest-benchmark, record its result."""

    def run(case: Case) -> None:
        if case.skip is not None:
            pytest.skip(case.skip)
        benchmark.group = f"{case.suite}: {case.group}"
        benchmark.extra_info.update(role=case.role, items=case.items, label=case.label)
        with case_settings(case):
            step = case.make(workspaces(case.suite))
            try:
                peak = peak_in_fresh_interpreter(case.suite, SCALE, "cpu", case.id) if case.peak else None
                benchmark.pedantic(step.run, rounds=case.rounds, warmup_rounds=case.warmup, iterations=1)
            finally:
                if step.close is not None:
                    step.close()
        if benchmark.stats is None:  # --benchmark-disable (pytest's default here): each step ran once, untimed
            return
        stats = benchmark.stats.stats
        RESULTS.append(Result.of(case, median_ms=stats.median * 1e3, iqr_ms=stats.iqr * 1e3, rounds=stats.rounds,
                                 saved_mib=step.saved_mib, peak_mib=peak))

    return run


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    if not RESULTS:
        return
    text = markdown(RESULTS, machine("cpu"))
    terminalreporter.write_sep("=", "cxrfast against baselines")
    terminalreporter.write_line(text)
    out = Path("build/benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{'+'.join(sorted({r.suite for r in RESULTS}))}.md").write_text(text)
