"""Fixtures several test files share, registered for every test by tests/conftest.py."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from cxrfast.data.phantom_archive import write_phantom_archive


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    """A folder of 20 labelled 64² phantom radiographs (DICOM, one per patient) and labels.csv (with reports):
    five batches of 4 for the short training runs. Read only: tests write elsewhere."""
    out = tmp_path_factory.mktemp("phantoms")
    write_phantom_archive(out, 20, rows=64, reports=True, progress=False)
    return out


@pytest.fixture(scope="module")
def module_folder(tmp_path_factory, request):
    """`module_folder(name)`: a new folder for files a module's tests share, all of them removed
    when the module is done. CI's disk can be small and a segmentation run writes hundreds of MB:
    like each passing test's tmp_path (tmp_path_retention_policy), nothing outlives its module."""
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])

    def folder(name: str):
        path = root / name
        path.mkdir()
        return path

    yield folder
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def one_thread():
    """Bitwise equality needs the same float sums in every run: one thread everywhere (with more,
    a parallel reduction's order may vary from run to run). Yields the environment for a child
    process with the same setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {**os.environ, "OMP_NUM_THREADS": "1"}
    torch.set_num_threads(threads)
