"""The CUDA Sinkhorn kernels' own source, run on the CPU: kernels/cuda/sinkhorn.cu with its
launches rewritten for tests/cuda_emulation/cuda_runtime.h (one std::thread per CUDA thread,
__syncthreads a barrier, warp shuffles through shared memory; cuda_fp16.h and cuda_bf16.h there
give the half types), compiled with the host compiler and checked against a double-precision
reference (tests/cuda_emulation/sinkhorn_harness.cpp): the three Sinkhorn passes over every
split of their reduced axis, the log-sum-exps, the code dots and the gradient, on float32,
float16 and bfloat16 scores, sizes from 0 and 1 across the warp, block and crop-group edges. No
GPU needed: it catches indexing, bounds and barrier mistakes, not what only nvcc's code or real
warps would show."""

from __future__ import annotations

import re

from helpers.cuda_emulation import run_emulated

LAUNCH = re.compile(r"(\w+_kernel<T>)<<<grid, block, 0, stream>>>\(")


def test_emulated_kernels_match_the_reference(tmp_path):
    run_emulated(tmp_path, "sinkhorn.cu", "sinkhorn_harness.cpp", LAUNCH, r"emu_launch(\1, grid, block, ", launches=6)
