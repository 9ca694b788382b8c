"""The small files a fine-tuning run writes beside its checkpoints: `run.json` (what the run was
and what it found) and per-epoch logs such as `validation.csv`, each rewritten atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from cxrfast.atomic import write_text_atomically

RUN_FILE, VALIDATION_FILE = "run.json", "validation.csv"


def write_json(path: Path, value) -> Path:
    """JSON with NaN written as null (an undefined AUROC, Dice or threshold), which strict readers accept."""
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return write_text_atomically(path, json.dumps(clean(value), indent=2) + "\n")


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
