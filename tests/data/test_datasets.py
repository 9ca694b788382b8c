"""Datasets for the DataLoader: image files read as the reader reads them, and SSL views that
depend only on (seed, epoch, index), whatever the worker count."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from cxrfast.data.augment import ViewAugment
from cxrfast.data.datasets import ImageFiles, SSLViews
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.prepared_cache import PreparedCache
from cxrfast.data.sources import load_image
from cxrfast.io.png_writer import write_png


def _folder(tmp_path, count=6):
    src = tmp_path / "src"
    src.mkdir()
    g = np.random.default_rng(0)
    for i in range(count):
        write_png(src / f"{i}.png", g.random((60 + 4 * i, 50)).astype(np.float32), bits=16)
    return src


def test_image_files_read_as_the_reader_does(tmp_path):
    src = _folder(tmp_path)
    files = ImageFiles(src)
    assert len(files) == 6
    for i, source in enumerate(files.sources):
        np.testing.assert_array_equal(files[i][0].numpy(), load_image(source.path).pixels)


def test_views_depend_on_seed_epoch_and_index_only(tmp_path):
    src = _folder(tmp_path)
    views = SSLViews(ImageFiles(src), ViewAugment(size=32), views=2, seed=3)
    first, second = views[0]
    assert first.shape == second.shape == (1, 32, 32) and not torch.equal(first, second)
    inline = [torch.stack(views[i]) for i in range(len(views))]
    loader = DataLoader(views, batch_size=4, num_workers=2)
    pooled = [torch.stack(pair) for batch in loader for pair in zip(*batch)]
    assert len(pooled) == len(inline)
    for got, expected in zip(pooled, inline):
        torch.testing.assert_close(got, expected)
    views.set_epoch(1)
    assert not torch.equal(views[0][0], first)
    views.set_epoch(0)
    torch.testing.assert_close(views[0][0], first)


def test_views_of_the_prepared_cache(tmp_path):
    src = _folder(tmp_path)
    prepare_cache(src, tmp_path / "cache", size=40, workers=0, progress=False)
    cache = PreparedCache(tmp_path / "cache")
    views = SSLViews(cache, ViewAugment(size=24), views=3)
    batch = next(iter(DataLoader(views, batch_size=5)))
    assert len(batch) == 3 and all(v.shape == (5, 1, 24, 24) for v in batch)
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in batch)
