"""DALI's GPU pipeline against cxrfast's CPU loader: two 224² SSL views of each of 64 phantom
radiographs (1024², 12-bit DICOM), uncompressed and JPEG 2000, batches of 16 delivered on the GPU.

DALI decodes JPEG 2000 on the GPU (nvjpeg2k) and crops and augments there; the CPU loader is the
one the engine uses (EpochLoader over SSLViews of the files, as cxrfast.bench.loader builds
it), its batches copied to the GPU. Both get the same worker count. One timed round is one pass
over every file, its workers' start included, as an epoch of training would see it."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from gpu.measure import Row, run_case, time_steps

SECTION = "loader"
TITLE = "Loading, two views per image"
UNIT = "images/s"
IMAGES, ROWS, BATCH, SIZE = 64, 1024, 16, 224
WORKERS = max(1, min(8, (os.cpu_count() or 2) // 2))
FORMATS = {"uncompressed": "explicit", "JPEG 2000": "jpeg2000"}  # transfer syntaxes, also the folders
DATA_VARIABLE = "CXRFAST_GPU_CHECK_DATA"  # where the parent wrote the phantoms
DALI, CPU = "cxrfast DALI (device=cuda)", "cxrfast CPU loader (EpochLoader)"
CONTENDERS = {DALI: {}, CPU: {}}
BASELINES = (CPU,)
_CHUNK = 8  # phantoms per writing task


def case_name(kind: str) -> str:
    return f"{IMAGES} {kind} {ROWS}² DICOM -> 2 × {SIZE}² views"


def cases(contender: str) -> list[Row]:
    return [Row(SECTION, case_name(kind), "fp32", contender, items=IMAGES) for kind in FORMATS]


def _write_chunk(folder: str, start: int, syntax: str) -> None:
    from cxrfast.data.phantom_archive import write_phantom_archive

    write_phantom_archive(folder, _CHUNK, rows=ROWS, seed=start, transfer_syntax=syntax, progress=False)


def write_phantoms(root: Path) -> None:
    """Every format's phantoms under root/<transfer syntax>/, written in parallel (into chunk
    folders, so that each chunk's labels file is its own)."""
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        jobs = [pool.submit(_write_chunk, str(root / syntax / f"part-{start:03d}"), start, syntax)
                for syntax in FORMATS.values() for start in range(0, IMAGES, _CHUNK)]
        for job in jobs:
            job.result()


def _loader(contender: str, folder: Path):
    from cxrfast.data.augment import Crops, ViewAugment

    crops = [Crops(ViewAugment(size=SIZE), 2)]
    if contender == DALI:
        from cxrfast.data.dali import DaliLoader

        return DaliLoader(folder, BATCH, crops=crops, device="cuda", workers=WORKERS, threads=WORKERS)
    from cxrfast.data.datasets import ImageFiles, SSLViews
    from cxrfast.data.loader import EpochLoader

    return EpochLoader(SSLViews(ImageFiles(folder), crops), BATCH, workers=WORKERS)


def _measure(contender: str, folder: Path):
    loader = _loader(contender, folder)

    def one_pass():
        images = 0
        for batch in loader:
            views = batch.to("cuda").views
            assert views[0].is_cuda and views[0].shape[-2:] == (SIZE, SIZE)
            images += views[0].shape[0]
        assert images == IMAGES, f"a pass gave {images} images, not {IMAGES}"

    ms, _ = time_steps(one_pass, warmup=1, repeats=3)  # torch's allocator does not see DALI's memory
    return ms, None


def run(contender: str):
    root = Path(os.environ[DATA_VARIABLE])
    for row, syntax in zip(cases(contender), FORMATS.values()):
        yield run_case(row, lambda: _measure(contender, root / syntax))
