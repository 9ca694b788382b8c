"""The GPU check's markdown report: the machine, the test summary, and one table per benchmark
section with every contender's ratio against each of the section's baselines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from gpu.measure import Row
from gpu.tests_run import TestSummary


def _speed(row: Row, unit: str) -> str:
    if row.error:
        return "**FAILED**"
    if row.unsupported:
        return "not supported"
    return f"{row.items * 1e3 / row.ms:,.0f}" if unit == "images/s" else f"{row.ms:.2f}"


def _ratio(row: Row, baseline: Row | None) -> str:
    """How many times faster than the baseline, and its share of the baseline's memory."""
    if baseline is None or row is baseline or row.ms is None or baseline.ms is None:
        return "—"
    text = f"{baseline.ms / row.ms:.2f}× as fast"
    if row.peak_mib is not None and baseline.peak_mib:
        text += f", {row.peak_mib / baseline.peak_mib:.2f}× the memory"
    return text


def section_table(section: ModuleType, rows: Sequence[Row]) -> list[str]:
    unit = getattr(section, "UNIT", "ms")
    mine = [r for r in rows if r.section == section.SECTION]
    first = {}  # each case's contenders side by side, in the order they ran
    for r in mine:
        first.setdefault((r.case, r.precision), len(first))
    mine.sort(key=lambda r: first[(r.case, r.precision)])
    by_key = {r.key: r for r in mine}
    memory = any(r.peak_mib is not None for r in mine)
    header = ["case", "precision", "contender", unit] + (["peak MiB"] if memory else []) + \
        [f"vs {b}" for b in section.BASELINES]
    lines = [f"## {section.TITLE}", "", section.__doc__.strip().split("\n\n")[0].replace("\n", " "), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in mine:
        cells = [row.case, row.precision, row.contender, _speed(row, unit)]
        if memory:
            cells.append("—" if row.peak_mib is None else f"{row.peak_mib:,.0f}")
        cells += [_ratio(row, by_key.get((row.section, row.case, row.precision, b))) for b in section.BASELINES]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _one_line(text: str, limit: int = 600) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + " …"


def failure_count(tests: TestSummary, rows: Sequence[Row], problems: Sequence[str]) -> int:
    return len(tests.failed) + (tests.problem is not None) + sum(r.error is not None for r in rows) + len(problems)


def write_report(path: Path, machine: dict[str, str], tests: TestSummary, sections: Sequence[ModuleType],
                 rows: Sequence[Row], problems: Sequence[str], bench_table: str) -> None:
    failures = failure_count(tests, rows, problems)
    verdict = f"**FAILED**: {failures} failure{'s' * (failures != 1)}, listed below" if failures else "**PASSED**"
    lines = ["# make gpu-check", "", verdict, "", "## Machine", ""]
    lines += [f"- {name}: {value}" for name, value in machine.items()]
    lines += ["", "## Tests (`pytest -m gpu tests`)", "",
              f"{tests.passed} passed, {len(tests.failed)} failed, {len(tests.skipped)} skipped "
              f"in {tests.seconds:.0f} s."]
    if tests.problem:
        lines += ["", f"**Run problem**: {tests.problem}"]
    if tests.failed:
        lines += ["", "Failed:"] + [f"- `{name}`: {message}" for name, message in tests.failed]
    if tests.skipped:
        lines += ["", "Skipped:"] + [f"- `{name}`: {reason}" for name, reason in tests.skipped]
    lines += ["", "# Benchmarks", "",
              "Medians of timed repeats after warm-up, wall-clock between CUDA synchronisations; peak MiB is "
              "torch's CUDA allocator high-water mark above the memory allocated before the step. "
              "Ratios: the baseline's time over this row's (above 1: faster), this row's peak memory over "
              "the baseline's.", ""]
    for section in sections:
        lines += section_table(section, rows)
    lines += ["## `cxrfast bench sparse losses --device cuda --scale tiny` (the command's CUDA path, not figures)", "", bench_table]
    broken = [r for r in rows if r.error]
    refused = [r for r in rows if r.unsupported]
    if problems or broken:
        lines += ["## Failures", ""] + [f"- {p}" for p in problems]
        lines += [f"- {r.section} / {r.case} / {r.precision} / {r.contender}: {_one_line(r.error)}"
                  for r in broken]
        lines.append("")
    if refused:
        lines += ["## Not supported by a forced backend (reported, not failures)", ""]
        lines += [f"- {r.section} / {r.case} / {r.precision} / {r.contender}: "
                  f"{_one_line(r.unsupported)}" for r in refused]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
