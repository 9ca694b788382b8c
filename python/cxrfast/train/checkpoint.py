"""Checkpoints of a run: written to a temporary file and renamed into place (a kill never leaves a
half-written checkpoint where a resume would find it), the last k kept, and the best one."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

_NAME = re.compile(r"checkpoint-(\d{8})\.pt$")
BEST = "best.pt"


def save_checkpoint(state: dict, run: Path, step: int, keep: int) -> Path:
    path = run / f"checkpoint-{step:08d}.pt"
    temporary = run / f".{path.name}.tmp"
    torch.save(state, temporary)
    os.replace(temporary, path)
    for old in checkpoints(run)[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def save_best(path: Path, run: Path) -> None:
    temporary = run / f".{BEST}.tmp"
    shutil.copyfile(path, temporary)
    os.replace(temporary, run / BEST)


def checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return sorted(p for p in run.glob("checkpoint-*.pt") if _NAME.search(p.name))


def latest_checkpoint(run: Path) -> Path | None:
    found = checkpoints(run)
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict:
    # Our own files: RNG states and the optimiser's structures need more than weights_only allows.
    return torch.load(path, map_location="cpu", weights_only=False)
