"""The GPU check's test run: `pytest -m gpu tests` in a child process with a time limit, its
outcome read back from the junit XML it writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TestSummary:
    passed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (test, first line of the failure)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (test, reason)
    seconds: float = 0.0
    problem: str | None = None  # the run itself went wrong: timed out, collected nothing, no XML

    @property
    def ok(self) -> bool:
        return not self.failed and self.problem is None


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def read_junit(path: Path) -> TestSummary:
    summary = TestSummary()
    for case in ElementTree.parse(path).iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            summary.passed += 1
        elif outcome.tag == "skipped":
            summary.skipped.append((name, _first_line(outcome.get("message"))))
        else:
            summary.failed.append((name, f"{outcome.tag}: {_first_line(outcome.get('message'))}"))
    return summary


def run_gpu_tests(root: Path, junit: Path, log: Path, timeout: float) -> TestSummary:
    """Runs the tests marked `gpu` under root/tests (stdout and stderr to `log`); a run past
    `timeout` seconds is stopped, with its whole process group."""
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "-q", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={junit}"]
    started = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                 start_new_session=True)
        try:
            code = child.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            code = None
    seconds = time.perf_counter() - started
    summary = read_junit(junit) if junit.exists() else TestSummary()
    summary.seconds = seconds
    if code is None:
        summary.problem = f"pytest was stopped after {timeout:.0f} s, its time limit (see {log})"
    elif code == 5:
        summary.problem = "pytest collected no test marked gpu"
    elif not junit.exists():
        summary.problem = f"pytest exited with status {code} and wrote no junit XML (see {log})"
    elif code != 0 and not summary.failed:
        summary.problem = f"pytest exited with status {code} (see {log})"
    return summary
