"""What a benchmark run found: a result per case, and per group each cxrfast contender against
each baseline (how many times faster) and floor (how many times the floor it takes), as a rich
table, Markdown for BENCHMARKS.md or an issue, and JSON a lab can share."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata

from rich.table import Table

from cxrfast.bench.case import Case


@dataclass
class Result:
    suite: str
    group: str
    label: str
    role: str
    items: int
    unit: str
    median_ms: float | None = None  # one round
    iqr_ms: float | None = None
    rounds: int = 0
    saved_mib: float | None = None
    peak_mib: float | None = None
    error: str | None = None  # it raised: a failure of the run
    skipped: str | None = None  # it cannot run at this size, and why

    @classmethod
    def of(cls, case: Case, **measured) -> Result:
        return cls(case.suite, case.group, case.label, case.role, case.items, case.unit, **measured)

    @property
    def per_item_ms(self) -> float | None:
        return None if self.median_ms is None else self.median_ms / self.items


@dataclass(frozen=True)
class Comparison:
    suite: str
    group: str
    cxrfast: str
    reference: str
    role: str  # "baseline" or "floor"
    cxrfast_ms: float  # per item
    reference_ms: float
    ratio: float  # baseline: its time over ours (× faster); floor: ours over its (× the floor)
    memory: str = ""

    @property
    def text(self) -> str:
        if self.role == "floor":
            ratio = f"{self.ratio:.2f}× the floor"
        else:  # a slower result says so rather than reading "0.5× faster"
            ratio = f"{self.ratio:.2f}× faster" if self.ratio >= 1 else f"{1 / self.ratio:.2f}× slower"
        return ratio + (f"; {self.memory}" if self.memory else "")


def _memory(ours: Result, theirs: Result) -> str:
    parts = []
    for field, what in (("saved_mib", "saved for backward"), ("peak_mib", "peak memory")):
        mine, their = getattr(ours, field), getattr(theirs, field)
        if mine is not None and their is not None:
            share = f" ({mine / their:.3g}×)" if their > 0 else ""
            parts.append(f"{what} {mine:.0f} vs {their:.0f} MiB{share}")
    return "; ".join(parts)


def comparisons(results: list[Result]) -> list[Comparison]:
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        if result.median_ms is not None:
            groups.setdefault((result.suite, result.group), []).append(result)
    found = []
    for (suite, group), measured in groups.items():
        for ours in (r for r in measured if r.role == "cxrfast"):
            for other in (r for r in measured if r.role in ("baseline", "floor")):
                mine, theirs = ours.per_item_ms, other.per_item_ms
                ratio = theirs / mine if other.role == "baseline" else mine / theirs
                found.append(Comparison(suite, group, ours.label, other.label, other.role, mine, theirs, ratio,
                                        _memory(ours, other)))
    return found


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(device: str) -> dict[str, str]:
    import torch

    info = {"CPU": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch": torch.__version__, "cxrfast": _version("cxrfast"), "Python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["GPU"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
        info["Triton"] = _version("triton")
    return info


def _failures(results: list[Result]) -> list[str]:
    return [f"{r.suite} | {r.group} | {r.label}: {r.error}" for r in results if r.error]


def _skips(results: list[Result]) -> list[str]:
    return [f"{r.suite} | {r.group} | {r.label}: {r.skipped}" for r in results if r.skipped]


def markdown(results: list[Result], info: dict[str, str]) -> str:
    lines = ["; ".join(f"{k}: {v}" for k, v in info.items()) + ". Medians per item (image unless named).", "",
             "| suite | group | cxrfast | ms/item | compared with | its ms/item | ratio |",
             "|---|---|---|---|---|---|---|"]
    for c in comparisons(results):
        lines.append(f"| {c.suite} | {c.group} | {c.cxrfast} | {c.cxrfast_ms:.3g} | {c.reference} | "
                     f"{c.reference_ms:.3g} | {c.text} |")
    for title, rows in (("Not run at this size", _skips(results)), ("Failed", _failures(results))):
        if rows:
            lines += ["", f"{title}:", *(f"- {row}" for row in rows)]
    return "\n".join(lines) + "\n"


def as_json(results: list[Result], info: dict[str, str], scale: str, device: str) -> dict:
    return {"machine": info, "scale": scale, "device": device, "results": [asdict(r) for r in results],
            "comparisons": [asdict(c) | {"text": c.text} for c in comparisons(results)]}


def rich_table(results: list[Result]) -> Table:
    table = Table(title="cxrfast against its baselines (medians per item)")
    for column in ("suite", "group", "cxrfast", "ms/item", "compared with", "its ms/item", "ratio"):
        table.add_column(column, justify="right" if "ms" in column else "left", overflow="fold")
    for c in comparisons(results):
        colour = "green" if (c.ratio >= 1) == (c.role == "baseline") else "yellow"
        table.add_row(c.suite, c.group, c.cxrfast, f"{c.cxrfast_ms:.3g}", c.reference, f"{c.reference_ms:.3g}",
                      f"[{colour}]{c.text}[/{colour}]")
    return table
