"""The CUDA similarity kernels' own source, run on the CPU: kernels/cuda/similarity.cu with its
launches rewritten for tests/cuda_emulation/cuda_runtime.h (one std::thread per CUDA thread,
__syncthreads a barrier, shuffles through shared memory), compiled with the host compiler and
checked against a double-precision reference over 228 cases (sizes 0 to 200 across tile edges,
offsets far and near, both modes, with and without the column term). No GPU needed: it catches
indexing, bounds and barrier mistakes, not what only nvcc's code or real warps would show."""

from __future__ import annotations

import re

from helpers.cuda_emulation import run_emulated

LAUNCH = re.compile(r"(\w+_kernel)<<<blocks\((\w+)\), dim3\(kSide, kSide\), 0, stream>>>\(")


def test_emulated_kernels_match_the_reference(tmp_path):
    run_emulated(tmp_path, "similarity.cu", "similarity_harness.cpp", LAUNCH,
                 r"emu_launch(\1, dim3(blocks(\2)), dim3(kSide, kSide), ", launches=3)
