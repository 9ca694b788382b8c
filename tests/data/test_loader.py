"""EpochLoader: batches per epoch, the epoch passed to sampler and views, resumption from its
state, and disjoint per-rank shards that together cover the dataset."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from cxrfast.data.augment import Crops, ViewAugment
from cxrfast.data.datasets import SSLViews
from cxrfast.data.loader import EpochLoader


class Numbered(Dataset):
    """Item i is a (1, 8, 8) image of value i / 100."""

    def __len__(self):
        return 24

    def __getitem__(self, index):
        return torch.full((1, 8, 8), index / 100)


def _indices(loader):
    return [round(float(v) * 100) for batch in loader for v in batch[:, 0, 0, 0]]


def test_epochs_reshuffle_and_resume_where_they_were():
    loader = EpochLoader(Numbered(), 5, workers=0, seed=1)
    assert len(loader) == 4  # 24 // 5, the last partial batch dropped
    first, second = _indices(loader), _indices(loader)
    assert len(first) == 20 and first != second and loader.epoch == 2
    resumed = EpochLoader(Numbered(), 5, workers=0, seed=1)
    resumed.load_state_dict({"epoch": 1})
    assert _indices(resumed) == second


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_inside_an_epoch(workers):
    whole = EpochLoader(Numbered(), 5, workers=workers, seed=3)
    epochs = [_indices(whole), _indices(whole)]
    interrupted = EpochLoader(Numbered(), 5, workers=workers, seed=3)
    iterator = iter(interrupted)
    taken = [round(float(v) * 100) for _ in range(3) for v in next(iterator)[:, 0, 0, 0]]
    state = interrupted.state_dict()
    assert state == {"epoch": 0, "batch": 3}
    resumed = EpochLoader(Numbered(), 5, workers=workers, seed=3)
    resumed.load_state_dict(state)
    assert taken + _indices(resumed) == epochs[0]
    assert _indices(resumed) == epochs[1] and resumed.state_dict() == {"epoch": 2, "batch": 0}


def test_views_follow_the_epoch():
    views = SSLViews(Numbered(), [Crops(ViewAugment(size=4, scale=(0.3, 0.6)), 2)])
    loader = EpochLoader(views, 24, workers=0, shuffle=False)
    epoch0, epoch1 = list(loader)[0].views[0], list(loader)[0].views[0]  # one batch per epoch
    assert not torch.equal(epoch0, epoch1)
    loader.load_state_dict({"epoch": 0})
    torch.testing.assert_close(list(loader)[0].views[0], epoch0)


def test_rank_shards_are_disjoint_and_cover_the_dataset():
    shards = [_indices(EpochLoader(Numbered(), 4, workers=0, rank=r, world_size=2, seed=3)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 12
    assert not set(shards[0]) & set(shards[1]) and set(shards[0]) | set(shards[1]) == set(range(24))


def test_bad_rank():
    with pytest.raises(ValueError, match="rank 2"):
        EpochLoader(Numbered(), 4, rank=2, world_size=2)
