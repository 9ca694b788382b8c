"""Two-view SSL batches (2 × 224² at full scale) from 12-bit DICOM radiographs (2500×2048), 2
DataLoader workers, against the loader a user would write: pydicom (modality LUT, VOI LUT,
inversion) and torchvision's RandomResizedCrop in a torch DataLoader with the same workers, same run.

cxrfast reads the files itself (ImageFiles) or the prepared cache (shorter side 512, prepared
once before timing), and draws its views with ViewAugment (crop, rotation, jitter, blur: more
work per view than the baseline's crop alone). Its DALI pipeline runs with CPU operators on the
CPU (2 Python workers for headers and raw pixels, 2 DALI threads), with GPU operators on
device "cuda". The DataLoaders' workers persist across rounds, so only the warm-up starts them.
One round is one pass over every file."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from torch.utils.data import DataLoader, Dataset

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.bench.phantom_files import radiograph_folder
from cxrfast.data.augment import Crops, ViewAugment
from cxrfast.data.batch import Batch, collate
from cxrfast.data.datasets import ImageFiles, SSLViews
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.prepared_cache import PreparedCache
from cxrfast.models import import_timm

SUITE = "loader"
WORKERS = 2


@dataclass(frozen=True)
class Sizes:
    rows: int
    columns: int
    uncompressed: int  # files of each transfer syntax
    jpeg2000: int
    batch: int
    view: int  # each view's side
    cache: int  # the prepared cache's shorter side


SIZES = {"full": Sizes(2500, 2048, 16, 8, 8, 224, 512), "quick": Sizes(1024, 1024, 16, 8, 8, 224, 512),
         "tiny": Sizes(256, 256, 4, 4, 2, 64, 128)}


class NaiveViews(Dataset):
    """What a user writes: pydicom's display chain, then two torchvision random resized crops."""

    def __init__(self, paths: list[str], size: int):
        import_timm()  # torchvision imports beside CPU torch only with its operators declared
        import torchvision.transforms.v2 as transforms

        self.paths = paths
        self.crop = transforms.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        ds = pydicom.dcmread(self.paths[index])
        values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float32)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            values = values.max() - values
        image = torch.from_numpy(values / max(float(values.max()), 1.0))[None]
        return self.crop(image), self.crop(image)


def _data(workspace: Workspace, source: str, sizes: Sizes) -> Path:
    """The folder of `source`'s radiographs ("explicit", "jpeg2000"), or the cache of the
    uncompressed ones ("cache")."""
    if source != "cache":
        count = sizes.uncompressed if source == "explicit" else sizes.jpeg2000
        return radiograph_folder(workspace, source, count, sizes.rows, sizes.columns)

    def prepare() -> Path:  # untimed, so in this process: a pool of spawned workers takes seconds to start
        out = workspace.directory("caches") / f"cache-{sizes.cache}"
        prepare_cache(_data(workspace, "explicit", sizes), out, size=sizes.cache, workers=0, progress=False)
        return out

    return workspace.shared(("cache", sizes), prepare)


def _release_workers(loader: DataLoader) -> None:
    """A persistent DataLoader keeps its workers in its iterator (torch has no public way to
    end them): shut them down now, not when the process exits."""
    iterator, loader._iterator = loader._iterator, None
    if iterator is not None:
        iterator._shutdown_workers()


def _loading(kind: str, source: str, sizes: Sizes):
    """kind: "files" or "cache" (cxrfast's datasets), "dali" (its DALI pipeline), "naive" (the baseline)."""

    def make(workspace: Workspace) -> Step:
        data = _data(workspace, source, sizes)
        crops = [Crops(ViewAugment(size=sizes.view), 2)]
        if kind == "dali":
            from cxrfast.data.dali import DaliLoader

            device = "cuda" if workspace.device == "cuda" else "cpu"
            loader = DaliLoader(data, sizes.batch, crops=crops, device=device, workers=WORKERS, threads=WORKERS)
        else:
            dataset = (NaiveViews(sorted(str(p) for p in data.glob("*.dcm")), sizes.view) if kind == "naive" else
                       SSLViews(PreparedCache(data) if kind == "cache" else ImageFiles(data), crops))
            loader = DataLoader(dataset, batch_size=sizes.batch, num_workers=WORKERS, persistent_workers=True,
                                collate_fn=collate)

        def one_pass() -> None:
            for batch in loader:  # a Batch from cxrfast's loaders, a tuple of views from the naive one
                first = batch.views[0] if isinstance(batch, Batch) else batch[0]
                assert first.shape[-2:] == (sizes.view, sizes.view)

        if kind == "dali":  # its workers end with its pipeline, when the step is dropped
            return Step(one_pass)
        return Step(one_pass, close=lambda: _release_workers(loader))

    return make


def _dali_missing() -> str | None:
    try:
        found = importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:  # not even the nvidia namespace
        found = False
    return None if found else "nvidia-dali is not installed"


def cases(scale: str, device: str) -> list[Case]:
    sizes = SIZES[scale]
    files = {"explicit": sizes.uncompressed, "cache": sizes.uncompressed, "jpeg2000": sizes.jpeg2000}
    groups = {  # group: [(role, label, kind of loader, its data)]
        "uncompressed files": [
            ("cxrfast", "cxrfast from the files", "files", "explicit"),
            ("baseline", "pydicom + torchvision", "naive", "explicit"),
            ("cxrfast", "cxrfast DALI pipeline from the files", "dali", "explicit"),
        ],
        "prepared cache": [
            ("cxrfast", "cxrfast from the cache", "cache", "cache"),
            ("baseline", "pydicom + torchvision on the files", "naive", "explicit"),
            ("cxrfast", "cxrfast DALI pipeline from the cache", "dali", "cache"),
        ],
        "JPEG 2000 files": [
            ("cxrfast", "cxrfast from the files", "files", "jpeg2000"),
            ("baseline", "pydicom + torchvision", "naive", "jpeg2000"),
            ("cxrfast", "cxrfast DALI pipeline from the files", "dali", "jpeg2000"),
        ],
    }
    prefix = f"{sizes.rows}x{sizes.columns} 12-bit DICOM -> 2 x {sizes.view}² views, {WORKERS} workers"
    dali_skip = _dali_missing()
    found = []
    for group, contenders in groups.items():
        for role, label, kind, source in contenders:
            images = files[source]
            if kind == "dali":  # DALI delivers whole batches only
                images -= images % sizes.batch
            found.append(Case(SUITE, f"{prefix}: {group}", label, role, images, _loading(kind, source, sizes),
                              skip=dali_skip if kind == "dali" else None))
    return found
