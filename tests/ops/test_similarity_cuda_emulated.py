"""The CUDA similarity kernels' own source, run on the CPU: kernels/cuda/similarity.cu with its
launches rewritten for tests/cuda_emulation/cuda_runtime.h (one std::thread per CUDA thread,
__syncthreads a barrier, shuffles through shared memory), compiled with the host compiler and
checked against a double-precision reference over 228 cases (sizes 0 to 200 across tile edges,
offsets far and near, both modes, with and without the column term). No GPU needed: it catches
indexing, bounds and barrier mistakes, not what only nvcc's code or real warps would show."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LAUNCH = re.compile(r"(\w+_kernel)<<<blocks\((\w+)\), dim3\(kSide, kSide\), 0, stream>>>\(")


def test_emulated_kernels_match_the_reference(tmp_path):
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no host C++ compiler (g++) to build the emulation")
    source = (ROOT / "kernels/cuda/similarity.cu").read_text()
    emulated, launches = LAUNCH.subn(r"emu_launch(\1, dim3(blocks(\2)), dim3(kSide, kSide), ", source)
    assert launches == 3, "every kernel launch must be rewritten"
    (tmp_path / "similarity_emulated.cpp").write_text(emulated)
    binary = tmp_path / "harness"
    subprocess.run([compiler, "-std=c++17", "-O2", "-pthread", f"-I{ROOT / 'tests/cuda_emulation'}",
                    f"-I{ROOT / 'kernels/cuda'}", str(ROOT / "tests/cuda_emulation/similarity_harness.cpp"),
                    str(tmp_path / "similarity_emulated.cpp"), "-o", str(binary)], check=True)
    result = subprocess.run([str(binary)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and ", 0 failures" in result.stdout, result.stdout[-4000:]
