"""The small files a fine-tuning run writes beside its checkpoints: `run.json` (what the run was
and what it found) and per-epoch logs such as `validation.csv`, each rewritten atomically."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from cxrfast.atomic import write_json, write_text_atomically

RUN_FILE, VALIDATION_FILE = "run.json", "validation.csv"
__all__ = ["RUN_FILE", "VALIDATION_FILE", "log_epoch", "write_json"]


def log_epoch(path: Path, epoch: int, values: dict[str, float]) -> None:
    """Append the epoch's row (floats to 6 decimals, NaN blank), first dropping rows of this epoch
    or later: a resumed run redoes them."""
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f)][1:]
        rows = [row for row in rows if int(row[0]) < epoch]
    cell = lambda v: str(v) if isinstance(v, int) else "" if math.isnan(v) else f"{v:.6f}"  # noqa: E731
    rows.append([str(epoch), *map(cell, values.values())])
    out = io.StringIO()
    csv.writer(out).writerows([["epoch", *values], *rows])
    write_text_atomically(path, out.getvalue())
