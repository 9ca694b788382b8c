"""Fixtures several test files share, registered for every test by tests/conftest.py."""

from __future__ import annotations

import os

import pytest
import torch

from cxrfast.data.phantom_archive import write_phantom_archive


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    """A folder of 20 labelled 64² phantom radiographs (DICOM, one per patient) and labels.csv:
    five batches of 4 for the short training runs. Read only: tests write elsewhere."""
    out = tmp_path_factory.mktemp("phantoms")
    write_phantom_archive(out, 20, rows=64, progress=False)
    return out


@pytest.fixture
def one_thread():
    """Bitwise equality needs the same float sums in every run: one thread everywhere (with more,
    a parallel reduction's order may vary from run to run). Yields the environment for a child
    process with the same setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {**os.environ, "OMP_NUM_THREADS": "1"}
    torch.set_num_threads(threads)
