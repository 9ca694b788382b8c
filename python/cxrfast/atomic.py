"""Files that must survive a kill: written beside their destination and renamed into place, so a
reader or a resumed run finds the old file or the whole new one, never half of either."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path` for the caller (or a library: torch.save,
    safetensors) to write; on success it is flushed to disk and renamed to `path`, on an
    exception removed. The temporary name starts with a dot and ends in `.tmp`, so globs for the
    real files never match it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        with open(temporary, "rb+") as f:  # what the writer left in the page cache reaches the disk
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, value) -> Path:
    """JSON with NaN written as null (an undefined AUROC, Dice or threshold), which strict readers accept."""
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, np.integer | np.bool_):
            return v.item()
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return write_text_atomically(path, json.dumps(clean(value), indent=2) + "\n")
