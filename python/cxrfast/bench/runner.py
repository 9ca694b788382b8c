"""`cxrfast bench`: every case of the chosen suites with its baselines in the same run, one case at
a time, then the report. A case that raises becomes a failure row and the run goes on; the
command's exit status says whether any failed."""

from __future__ import annotations

import json
import tempfile
import traceback
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cxrfast.bench.case import Case, Workspace, case_settings
from cxrfast.bench.report import Result, as_json, machine, markdown, rich_table
from cxrfast.bench.suites import suite_cases
from cxrfast.bench.timing import peak_in_fresh_interpreter, peak_of_round, time_rounds


def run_case(case: Case, workspace: Workspace, scale: str) -> Result:
    if case.skip is not None:
        return Result.of(case, skipped=case.skip)
    step = None
    try:
        with case_settings(case):
            step = case.make(workspace)
            timing = time_rounds(step.run, case.rounds, case.warmup, workspace.device)
            peak = None
            if case.peak:
                peak = (peak_of_round(step.run, "cuda") if workspace.device == "cuda"
                        else peak_in_fresh_interpreter(case.suite, scale, workspace.device, case.id))
        return Result.of(case, median_ms=timing.median_s * 1e3, iqr_ms=timing.iqr_s * 1e3, rounds=timing.rounds,
                         saved_mib=step.saved_mib, peak_mib=peak)
    except Exception as error:  # reported as a failure of this case; the others still run
        traceback.print_exc()
        return Result.of(case, error=f"{type(error).__name__}: {error}")
    finally:
        if step is not None and step.close is not None:
            step.close()


def run_bench(suites: list[str], scale: str = "full", device: str = "cpu", out: Path | None = None,
              console: Console | None = None) -> list[Result]:
    """Run the suites' cases; print the table; with `out`, write bench.md and bench.json there."""
    console = console or Console(stderr=True)
    cases = [case for suite in suites for case in suite_cases(suite, scale, device)]
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="cxrfast-bench-") as scratch, \
            Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("benchmarks", total=len(cases))
        workspaces: dict[str, Workspace] = {}
        for case in cases:
            progress.update(task, description=f"{case.suite}: {case.id}")
            workspace = workspaces.setdefault(case.suite, Workspace(Path(scratch) / case.suite, device))
            results.append(run_case(case, workspace, scale))
            progress.advance(task)
    info = machine(device)
    console.print(rich_table(results))
    for result in results:
        if result.error:
            console.print(f"[red]failed[/red] {result.suite} | {result.group} | {result.label}: {result.error}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.md").write_text(markdown(results, info))
        (out / "bench.json").write_text(json.dumps(as_json(results, info, scale, device), indent=2) + "\n")
        console.print(f"report: {out / 'bench.md'} and {out / 'bench.json'}")
    return results
