"""Peak memory of one step, in a fresh interpreter: how far the process's resident set peaks
above where it stood just before the step (Linux's peak counter is reset first, so imports and
inputs do not hide it). A benchmark file runs itself as a script for each case, the script calls
`print_peak(step)`, and the benchmark reads the figure with `peak_in_fresh_interpreter`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def print_peak(step: Callable[[], object]) -> None:
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the current size
    before = _status_kib("VmRSS")
    step()
    print(json.dumps({"peak_MiB": (_status_kib("VmHWM") - before) / 1024}))


def peak_in_fresh_interpreter(script: str | Path, *arguments: str) -> float:
    out = subprocess.run([sys.executable, str(script), *arguments], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_MiB"]
