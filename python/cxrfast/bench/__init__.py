"""cxrfast's shipped benchmarks (`cxrfast bench`): each suite's cases run with their baselines in
the same run on generated phantoms, reported as ratios (see cxrfast.bench.case and .report).
`benchmarks/` times the same cases under pytest-benchmark."""

from cxrfast.bench.runner import run_bench
from cxrfast.bench.suites import SUITES

__all__ = ["SUITES", "run_bench"]
