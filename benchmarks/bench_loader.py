"""Two-view SSL batches (2 × 224²) from 2500×2048 12-bit DICOM radiographs, 2 DataLoader workers,
against the loader a user would write: pydicom (modality LUT, VOI LUT, inversion) and
torchvision's RandomResizedCrop in a torch DataLoader with the same workers, same run.

cxrfast reads the files itself (ImageFiles) or the prepared cache (shorter side 512, prepared
once before timing), and draws its views with ViewAugment (crop, rotation, jitter, blur: more
work per view than the baseline's crop alone). Its DALI pipeline runs with CPU operators here
(2 Python workers for headers and raw pixels, 2 DALI threads), GPU operators where there is one.
One round is one pass over every file.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch
from bench_dicom import _write_set
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from torch.utils.data import DataLoader, Dataset

from cxrfast.data.augment import Crops, ViewAugment
from cxrfast.data.batch import Batch, collate
from cxrfast.data.datasets import ImageFiles, SSLViews
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.prepared_cache import PreparedCache
from cxrfast.models import import_timm

N_RAW, N_J2K, WORKERS, BATCH, SIZE = 16, 8, 2, 8, 224


class NaiveViews(Dataset):
    """What a user writes: pydicom's display chain, then two torchvision random resized crops."""

    def __init__(self, paths):
        import_timm()  # torchvision imports beside CPU torch only with its operators declared
        import torchvision.transforms.v2 as transforms

        self.paths = paths
        self.crop = transforms.RandomResizedCrop(SIZE, scale=(0.35, 1.0), antialias=True)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        ds = pydicom.dcmread(self.paths[index])
        values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float32)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            values = values.max() - values
        image = torch.from_numpy(values / max(float(values.max()), 1.0))[None]
        return self.crop(image), self.crop(image)


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("raw")
    _write_set(directory, N_RAW, "explicit")
    return directory


@pytest.fixture(scope="session")
def j2k_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("j2k")
    _write_set(directory, N_J2K, "jpeg2000")
    return directory


@pytest.fixture(scope="session")
def cache_dir(raw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "cache"
    prepare_cache(raw_dir, out, size=512, workers=WORKERS, progress=False)
    return out


def _loader(kind: str, directory):
    """(iterable of two-view batches, images per pass)."""
    if kind == "dali":
        from cxrfast.data.dali import DaliLoader

        device = "cuda" if torch.cuda.is_available() else "cpu"
        loader = DaliLoader(directory, BATCH, crops=[Crops(ViewAugment(size=SIZE), 2)], device=device, workers=WORKERS,
                            threads=WORKERS)
        return loader, len(loader) * BATCH
    if kind == "naive":
        dataset = NaiveViews(sorted(str(p) for p in directory.glob("*.dcm")))
    else:
        images = PreparedCache(directory) if kind == "cache" else ImageFiles(directory)
        dataset = SSLViews(images, [Crops(ViewAugment(size=SIZE), 2)])
    return DataLoader(dataset, batch_size=BATCH, num_workers=WORKERS, persistent_workers=True,
                      collate_fn=collate), len(dataset)


CASES = [  # group, role, label, dataset kind, fixture
    ("uncompressed files", "cxrfast", "cxrfast from the files", "files", "raw_dir"),
    ("uncompressed files", "baseline", "pydicom + torchvision", "naive", "raw_dir"),
    ("uncompressed files", "cxrfast", "cxrfast DALI pipeline from the files", "dali", "raw_dir"),
    ("prepared cache", "cxrfast", "cxrfast from the cache", "cache", "cache_dir"),
    ("prepared cache", "baseline", "pydicom + torchvision on the files", "naive", "raw_dir"),
    ("prepared cache", "cxrfast", "cxrfast DALI pipeline from the cache", "dali", "cache_dir"),
    ("JPEG 2000 files", "cxrfast", "cxrfast from the files", "files", "j2k_dir"),
    ("JPEG 2000 files", "baseline", "pydicom + torchvision", "naive", "j2k_dir"),
    ("JPEG 2000 files", "cxrfast", "cxrfast DALI pipeline from the files", "dali", "j2k_dir"),
]


@pytest.mark.parametrize("group,role,label,kind,fixture", CASES, ids=[f"{c[0]} | {c[2]}" for c in CASES])
def test_loader(benchmark, tag, request, group, role, label, kind, fixture):
    loader, images = _loader(kind, request.getfixturevalue(fixture))
    benchmark.group = f"2500x2048 12-bit DICOM -> 2 x {SIZE}² views, {WORKERS} workers: {group}"
    tag(role, images, label)

    def one_pass():
        for batch in loader:  # a Batch from cxrfast's loaders, a tuple of views from the naive one
            first = batch.views[0] if isinstance(batch, Batch) else batch[0]
            assert first.shape[-2:] == (SIZE, SIZE)

    benchmark.pedantic(one_pass, rounds=3, warmup_rounds=1, iterations=1)
