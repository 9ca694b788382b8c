"""Ratios against the baseline of each group, printed after pytest-benchmark's table and saved
as markdown in build/benchmarks/<file>.md for BENCHMARKS.md.

Each benchmark tags itself: extra_info["role"] is "cxrfast", "baseline" or "floor" and
extra_info["images"] the images one round handles, so figures are per image."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest


# Memory figures a benchmark may record in extra_info, and how the table names them.
MEMORY = {"saved_MiB": "saved for backward", "peak_MiB": "peak memory"}


def _per_image_ms(bench) -> float:
    return bench.stats.median * 1e3 / bench.extra_info.get("images", 1)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for bench in session.benchmarks:
        groups.setdefault(bench.group or bench.name, []).append(bench)
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; medians per image.",
        "",
        "| group | cxrfast ms/image | compared with | its ms/image | ratio |",
        "|---|---|---|---|---|",
    ]
    for group, benches in groups.items():
        ours = [b for b in benches if b.extra_info.get("role") == "cxrfast"]
        if not ours:
            continue
        for our in ours:  # every cxrfast contender of the group against every reference
            mine = _per_image_ms(our)
            name = group if len(ours) == 1 else f"{group}: {our.extra_info.get('label', our.name)}"
            for other in benches:
                role = other.extra_info.get("role")
                if role == "baseline":
                    ratio = f"{_per_image_ms(other) / mine:.2f}× faster"
                elif role == "floor":
                    ratio = f"{mine / _per_image_ms(other):.2f}× the floor"
                else:
                    continue
                for key, what in MEMORY.items():  # where recorded
                    if key in other.extra_info:
                        mib, their = our.extra_info[key], other.extra_info[key]
                        share = f" ({mib / their:.3g}×)" if their > 0 else ""
                        ratio += f"; {what} {mib:.0f} vs {their:.0f} MiB{share}"
                label = other.extra_info.get("label", other.name)
                lines.append(f"| {name} | {mine:.2f} | {label} | {_per_image_ms(other):.2f} | {ratio} |")
    text = "\n".join(lines)
    terminalreporter.write_sep("=", "cxrfast against baselines")
    terminalreporter.write_line(text)
    out = Path("build/benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    names = sorted({Path(b.fullname.split("::")[0]).stem for b in session.benchmarks})
    (out / f"{'+'.join(names)}.md").write_text(text + "\n")


@pytest.fixture
def tag(benchmark):
    """tag(role, images, label=None): mark this benchmark for the ratio table."""

    def _tag(role: str, images: int, label: str | None = None) -> None:
        benchmark.extra_info.update(role=role, images=images, label=label or role)

    return _tag
