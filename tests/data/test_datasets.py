"""Datasets for the DataLoader: image files read as the reader reads them, and SSL views that
depend only on (seed, epoch, index), whatever the worker count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cxrfast.data.augment import Crops, ViewAugment, resize_center
from cxrfast.data.batch import Batch
from cxrfast.data.datasets import ImageFiles, LabelledViews, SSLViews, view_generator
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
    views = SSLViews(ImageFiles(src), [Crops(ViewAugment(size=32), 2)], seed=3)
    first, second = views[0].views
    assert first.shape == second.shape == (1, 32, 32) and not torch.equal(first, second)
    inline = [torch.stack(views[i].views) for i in range(len(views))]
    loader = DataLoader(views, batch_size=4, num_workers=2, collate_fn=Batch.collate)
    pooled = [torch.stack(pair) for batch in loader for pair in zip(*batch.views)]
    assert len(pooled) == len(inline)
    for got, expected in zip(pooled, inline):
        torch.testing.assert_close(got, expected)
    views.set_epoch(1)
    assert not torch.equal(views[0].views[0], first)
    views.set_epoch(0)
    torch.testing.assert_close(views[0].views[0], first)


def test_views_of_the_prepared_cache(tmp_path):
    src = _folder(tmp_path)
    prepare_cache(src, tmp_path / "cache", size=40, workers=0, progress=False)
    cache = PreparedCache(tmp_path / "cache")
    views = SSLViews(cache, [Crops(ViewAugment(size=24), 3)])
    batch = next(iter(DataLoader(views, batch_size=5, collate_fn=Batch.collate)))
    assert len(batch.views) == 3 and all(v.shape == (5, 1, 24, 24) for v in batch.views)
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in batch.views)
    torch.testing.assert_close(batch.index, torch.arange(5))


def test_multi_crop_views_of_different_sizes(tmp_path):
    """DINO's layout: two global crops and several local ones, each at its own size, in order;
    each drawn as the crop's own augmentation draws it from the item's generator."""
    src = _folder(tmp_path)
    crops = [Crops(ViewAugment(size=32, scale=(0.4, 1.0)), 2), Crops(ViewAugment(size=12, scale=(0.05, 0.4)), 3)]
    views = SSLViews(ImageFiles(src), crops, seed=1)
    item = views[2]
    assert [tuple(v.shape) for v in item.views] == [(1, 32, 32)] * 2 + [(1, 12, 12)] * 3
    state = np.random.SeedSequence([1, 0, 2]).generate_state(1, np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state) >> 1)
    image = ImageFiles(src)[2][None]
    expected = crops[0].augment.views(image, 2, generator) + crops[1].augment.views(image, 3, generator)
    for got, want in zip(item.views, expected):
        torch.testing.assert_close(got, want[0])
    batch = Batch.collate([views[i] for i in range(4)])
    assert [tuple(v.shape) for v in batch.views] == [(4, 1, 32, 32)] * 2 + [(4, 1, 12, 12)] * 3


def test_batch_collate_and_move():
    items = [Batch([torch.full((1, 2, 2), float(i))], targets=torch.tensor([i, 1.0 - i]),
                   known=torch.tensor([True, i == 1])) for i in range(2)]
    batch = Batch.collate(items)
    assert len(batch) == 2 and batch.masks is None and batch.tokens is None
    torch.testing.assert_close(batch.targets, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert batch.known.tolist() == [[True, False], [True, True]]
    moved = batch.to("cpu")
    assert torch.equal(moved.views[0], batch.views[0]) and torch.equal(moved.targets, batch.targets)
    with pytest.raises(ValueError, match="targets is given for some items"):
        Batch.collate([items[0], Batch([torch.zeros(1, 2, 2)])])
    with pytest.raises(ValueError, match="non-empty list of views"):
        Batch((torch.zeros(1, 2, 2),))


def _labels(count=6):
    g = np.random.default_rng(1)
    targets = (g.random((count, 3)) < 0.5).astype(np.float32)
    known = g.random((count, 3)) < 0.8
    return targets, known


def test_labelled_views_carry_their_rows_labels(tmp_path):
    images = ImageFiles(_folder(tmp_path))
    targets, known = _labels()
    rows = [4, 1, 5]
    views = LabelledViews(images, targets, known, rows, size=(24, 20))
    batch = next(iter(DataLoader(views, batch_size=3, num_workers=2, collate_fn=Batch.collate)))
    torch.testing.assert_close(batch.targets, torch.from_numpy(targets[rows]))
    assert torch.equal(batch.known, torch.from_numpy(known[rows]))
    assert batch.index.tolist() == rows
    # Without an augmentation: the evaluation's centred view.
    for k, row in enumerate(rows):
        torch.testing.assert_close(batch.views[0][k], resize_center(images[row][None], (24, 20))[0])


def test_labelled_views_augment_by_seed_epoch_and_image(tmp_path):
    images = ImageFiles(_folder(tmp_path))
    targets, known = _labels()
    augment = ViewAugment(size=16, rotation=7.0, hflip=0.5)
    whole = LabelledViews(images, targets, known, range(6), augment=augment, seed=2)
    subset = LabelledViews(images, targets, known, [3], augment=augment, seed=2)
    expected = augment(images[3][None], view_generator(2, 0, 3))[0]
    torch.testing.assert_close(whole[3].views[0], expected)
    torch.testing.assert_close(subset[0].views[0], expected)  # the same image, the same view
    whole.set_epoch(1)
    assert not torch.equal(whole[3].views[0], expected)


def test_labelled_views_check_their_arrays(tmp_path):
    images = ImageFiles(_folder(tmp_path))
    targets, known = _labels()
    with pytest.raises(ValueError, match=r"must both be \(images, findings\) for the 6 images"):
        LabelledViews(images, targets[:5], known[:5], [0])
    with pytest.raises(ValueError, match="rows must index the 6 images, not 0..6"):
        LabelledViews(images, targets, known, [0, 6])
