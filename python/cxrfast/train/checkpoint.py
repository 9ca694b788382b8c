"""Checkpoints of a run: written atomically (a kill never leaves a half-written checkpoint where a
resume would find it), the last k kept, and the best one; and the random state they carry."""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from cxrfast.atomic import atomic_path

_NAME = re.compile(r"checkpoint-(\d{8})\.pt$")
BEST = "best.pt"


def save_checkpoint(state: dict, run: Path, step: int, keep: int) -> Path:
    path = run / f"checkpoint-{step:08d}.pt"
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
    for old in checkpoints(run)[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def save_best(path: Path, run: Path) -> None:
    """best.pt is the checkpoint at `path`: a hard link where the file system has them (a
    checkpoint is never written in place, so the two cannot drift; a segmentation run's is
    hundreds of MB), else a copy."""
    with atomic_path(run / BEST) as temporary:
        try:
            os.link(path, temporary)
        except OSError:
            shutil.copyfile(path, temporary)


def checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return sorted(p for p in run.glob("checkpoint-*.pt") if _NAME.search(p.name))


def latest_checkpoint(run: Path) -> Path | None:
    found = checkpoints(run)
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict:
    # Our own files: RNG states and the optimiser's structures need more than weights_only allows.
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """Every random state a step may draw from: torch's (CPU and CUDA), numpy's, Python's, and
    `generators` of the run's own."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generators": {name: g.get_state() for name, g in generators.items()}}


def restore_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
