"""Where a run's per-step metrics go: `metrics.csv` in the run directory and, where the
tensorboard package is installed (the `tensorboard` extra), scalars under `tensorboard/`.
Resuming trims both back to the checkpoint's step, so every step is logged once."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console

from cxrfast.atomic import atomic_path


class MetricsLog:
    def __init__(self, run: Path, columns: tuple[str, ...], step: int, console: Console):
        """`columns` start with "step"; rows after `step` (logged by a run killed after its last
        checkpoint) are dropped, since the resumed run logs them again."""
        self.path, self.columns = run / "metrics.csv", columns
        if self.path.exists():
            self._trim(step)
        else:
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(columns)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            console.print("TensorBoard is not installed (pip install 'cxrfast[tensorboard]'): metrics.csv only")
            self.board = None
        else:
            self.board = SummaryWriter(run / "tensorboard", purge_step=step + 1)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([f"{row[k]:.6g}" if isinstance(row[k], float) else row[k] for k in self.columns])
        if self.board is not None:
            for key in self.columns:
                if key not in ("step", "epoch"):
                    self.board.add_scalar(f"train/{key}", row[key], row["step"])
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()

    def _trim(self, step: int) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        with atomic_path(self.path) as temporary:
            with open(temporary, "w", newline="") as f:
                csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])
