"""`--init`: random from the seed, a real pretraining run (directory or its encoder file), a
supervised RGB checkpoint with a classifier; each recorded with its file's SHA-256, and each
mismatch an error naming the file."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file

from cxrfast.errors import ConfigError
from cxrfast.models import create_backbone, import_timm
from cxrfast.train import load_config, pretrain
from cxrfast.train.initial_weights import initial_backbone


@pytest.fixture(scope="module")
def run(module_folder, phantoms):
    out = module_folder("pretrained") / "run"
    config = load_config(None, (), method="simclr", data=str(phantoms), backbone="resnet18", out=str(out), epochs=1,
                         batch_size=4, image_size=32, workers=0, warmup_epochs=0,
                         method_options={"hidden_dim": 32, "projection_dim": 8})
    return pretrain(config, progress=False)


def _equal_weights(model, state):
    own = model.state_dict()
    assert own.keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)


def test_random_is_timms_initialisation_from_the_seed():
    torch.manual_seed(3)
    model, record = initial_backbone("resnet18", "random")
    torch.manual_seed(3)
    _equal_weights(model, create_backbone("resnet18").state_dict())
    assert record == {"init": "random", "backbone": "resnet18"}


@pytest.mark.parametrize("given", ["directory", "file"])
def test_a_pretraining_run_gives_its_encoder(run, given):
    model, record = initial_backbone("resnet18", str(run.run if given == "directory" else run.encoder))
    _equal_weights(model, load_file(run.encoder))
    assert record["init"] == "pretraining run" and record["path"] == str(run.encoder.resolve())
    assert record["sha256"] == hashlib.sha256(run.encoder.read_bytes()).hexdigest()


def test_a_supervised_rgb_checkpoint_with_its_classifier(tmp_path):
    torch.manual_seed(0)
    rgb = import_timm().create_model("resnet18", in_chans=3, num_classes=1000)
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": rgb.state_dict()}, path)
    model, record = initial_backbone("resnet18", str(path))
    expected = {k: v for k, v in rgb.state_dict().items() if not k.startswith("fc.")}
    expected["conv1.weight"] = rgb.conv1.weight.detach().sum(1, keepdim=True)  # timm's adapt_input_conv
    _equal_weights(model, expected)
    assert record["init"] == "state dict"


def test_mismatches_are_errors_naming_the_file(run, tmp_path):
    with pytest.raises(ConfigError, match="this pretraining run trained 'resnet18', not the backbone 'resnet50'"):
        initial_backbone("resnet50", str(run.run))
    with pytest.raises(ConfigError, match=r"encoder.safetensors: does not fit ResNet: .*shapes"):
        initial_backbone("resnet50", str(run.encoder))
    with pytest.raises(ConfigError, match="neither 'random' nor an existing file"):
        initial_backbone("resnet18", str(tmp_path / "nowhere.pth"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="must be a cxrfast pretraining run, with config.yaml"):
        initial_backbone("resnet18", str(tmp_path / "empty"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="bad.pth: not a readable state dict"):
        initial_backbone("resnet18", str(bad))
