"""CT slices beyond one channel of display values, through training: a cache of Hounsfield units
read through three windows pretrains SparK (its decoder reconstructing the three), exports an
encoder whose stem takes three channels and which timm loads back strictly, and fine-tunes and
predicts from it, the run's windows reused by the prediction; a cache holding the windows as
channels trains the same way without a display; what cannot fit is refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrfast.data.ct_display import CTDisplay
from cxrfast.data.ct_slices import CTSlices
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.prepared_cache import PreparedCache
from cxrfast.data.synthetic_ct import synthetic_ct, write_ct_series
from cxrfast.errors import ConfigError
from cxrfast.eval import Predictions
from cxrfast.models import import_timm
from cxrfast.train import FinetuneConfig, PretrainConfig, finetune, pretrain
from cxrfast.train.predict import predict_with_run

SIZE, WINDOWS = 32, "lung+mediastinum+bone"


@pytest.fixture(scope="module")
def labelled_ct(tmp_path_factory):
    """Six patients' series of eight slices, each slice labelled with whether it holds a nodule."""
    root = tmp_path_factory.mktemp("ct")
    rows = ["path,patient_id,Nodule,split"]
    for k, split in enumerate(["train"] * 4 + ["validate", "test"]):
        volume = synthetic_ct(8, SIZE, seed=k, nodules=1)
        paths = write_ct_series(root / f"p{k}", volume, shuffle=True, seed=k, patient_id=f"P{k}")
        rows += [f"p{k}/{p.name},P{k},{int(n)},{split}" for p, n in zip(paths, volume.nodule_slices())]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def _small(config_type, **settings):
    return config_type(backbone="resnet18", image_size=SIZE, epochs=1, batch_size=8, workers=0, **settings)


def test_a_hounsfield_cache_trains_through_windows_end_to_end(tmp_path, labelled_ct):
    cache = prepare_cache(labelled_ct, tmp_path / "hu", size=SIZE, workers=0, progress=False,
                          ct=CTSlices(CTDisplay.parse("hu"))).root
    run = pretrain(_small(PretrainConfig, method="spark", data=str(cache), display=WINDOWS, out=str(tmp_path / "pre"),
                          method_options={"decoder_width": 32}), progress=False)
    assert np.isfinite(run.losses).all()
    encoder = import_timm().create_model("resnet18", in_chans=3, num_classes=0, checkpoint_path=str(run.encoder))
    assert encoder.conv1.weight.shape[1] == 3  # loaded strictly: a key or shape amiss fails here
    tuned = finetune(_small(FinetuneConfig, data=str(cache), display=WINDOWS, init=str(run.run), findings=["Nodule"],
                            out=str(tmp_path / "tuned")), progress=False)
    # Scored again on its own images, through the windows its config recorded.
    again = Predictions.read(predict_with_run(tuned.run, cache, tmp_path / "again.csv", split="test"))
    own = Predictions.read(tuned.predictions)
    scores = dict(zip(again.images, again.scores[:, 0]))
    assert len(own.images) > 0 and set(own.images) <= set(scores)
    np.testing.assert_allclose([scores[image] for image in own.images], own.scores[:, 0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="its stem takes 3 channels, the images 1"):
        finetune(_small(FinetuneConfig, data=str(cache), display="lung", init=str(run.run), findings=["Nodule"],
                        out=str(tmp_path / "one-window")), progress=False)
    with pytest.raises(ConfigError, match="a cache of Hounsfield units; choose how"):
        pretrain(_small(PretrainConfig, method="spark", data=str(cache), out=str(tmp_path / "none")), progress=False)
    with pytest.raises(ConfigError, match="loader dali feeds one channel"):
        pretrain(_small(PretrainConfig, method="spark", data=str(cache), display=WINDOWS, loader="dali",
                        out=str(tmp_path / "dali")), progress=False)


def test_windows_cached_as_channels_train_without_a_display(tmp_path, labelled_ct):
    cache = prepare_cache(labelled_ct, tmp_path / "windows", size=SIZE, workers=0, progress=False,
                          ct=CTSlices(CTDisplay.parse(WINDOWS))).root
    assert PreparedCache(cache)[0].shape == (3, SIZE, SIZE)
    run = pretrain(_small(PretrainConfig, method="simclr", data=str(cache), out=str(tmp_path / "pre")),
                   progress=False)
    encoder = import_timm().create_model("resnet18", in_chans=3, num_classes=0, checkpoint_path=str(run.encoder))
    assert encoder(torch.rand(2, 3, SIZE, SIZE)).shape == (2, 512)
