"""Running a CUDA source on the CPU: its kernel launches rewritten for
tests/cuda_emulation/cuda_runtime.h, compiled with the host compiler beside a harness that checks
the kernels against a double-precision reference and prints its count of failures."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run_emulated(tmp_path: Path, kernels: str, harness: str, launch: re.Pattern, rewrite: str, launches: int) -> None:
    """Compile `kernels` (under kernels/cuda/) with `launch` rewritten as `rewrite` (`launches`
    of them) and `harness` (under tests/cuda_emulation/), run it, assert it found no failure."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no host C++ compiler (g++) to build the emulation")
    emulated, count = launch.subn(rewrite, (ROOT / "kernels/cuda" / kernels).read_text())
    assert count == launches, "every kernel launch must be rewritten"
    source, binary = tmp_path / f"{Path(kernels).stem}_emulated.cpp", tmp_path / "harness"
    source.write_text(emulated)
    subprocess.run([compiler, "-std=c++17", "-O2", "-pthread", f"-I{ROOT / 'tests/cuda_emulation'}",
                    f"-I{ROOT / 'kernels/cuda'}", str(ROOT / "tests/cuda_emulation" / harness), str(source), "-o",
                    str(binary)], check=True)
    result = subprocess.run([str(binary)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and ", 0 failures" in result.stdout, result.stdout[-4000:]
