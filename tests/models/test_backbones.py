"""Backbones by name, supervised RGB checkpoints into 1-channel stems, and the exported encoder
loaded back by timm itself."""

from __future__ import annotations

import pytest
import torch

from cxrfast.errors import ConfigError
from cxrfast.models import import_timm
from cxrfast.models.backbones import BACKBONES, create_backbone, export_encoder, load_supervised

timm = import_timm()


@pytest.mark.parametrize("name", [n for n in BACKBONES if not n.startswith("vit")])
def test_backbones_take_one_channel(name):
    model = create_backbone(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, model.num_features)


def _rgb_resnet18(tmp_path, form: str):
    torch.manual_seed(3)
    rgb = timm.create_model("resnet18", num_classes=1000).eval()
    state = rgb.state_dict()
    if form == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "rgb.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:  # a torchvision-style training checkpoint from DDP
        path = tmp_path / "rgb.pth"
        torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 90}, path)
    return rgb, path


@pytest.mark.parametrize("form", ["pth", "safetensors"])
def test_supervised_rgb_checkpoint_into_one_channel(tmp_path, form):
    rgb, path = _rgb_resnet18(tmp_path, form)
    grey = create_backbone("resnet18", checkpoint=path).eval()
    image = torch.rand(2, 1, 96, 80)
    with torch.no_grad():  # a grey image as three equal channels: the reference response
        expected = rgb.forward_head(rgb.forward_features(image.expand(-1, 3, -1, -1)), pre_logits=True)
        torch.testing.assert_close(grey(image), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grey.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))


def test_exported_encoder_loads_in_timm(tmp_path):
    torch.manual_seed(0)
    encoder = create_backbone("resnet18").eval()
    path = export_encoder(encoder, tmp_path / "encoder.safetensors")
    loaded = timm.create_model("resnet18", in_chans=1, num_classes=0, checkpoint_path=str(path)).eval()
    for (k, a), (_, b) in zip(encoder.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    # As a fine-tuning start with a new classifier.
    tuned = timm.create_model("resnet18", in_chans=1, num_classes=5, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tuned.forward_head(tuned.forward_features(image), pre_logits=True), encoder(image))
    assert tuned.fc.out_features == 5


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown backbone 'resnet51'"):
        create_backbone("resnet51")
    _, path = _rgb_resnet18(tmp_path, "pth")
    with pytest.raises(ConfigError, match="rgb.pth: does not fit"):
        load_supervised(create_backbone("resnet50"), path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pth: not a readable state dict"):
        create_backbone("resnet18", checkpoint=tmp_path / "junk.pth")
    with pytest.raises(ConfigError, match="missing.pth: checkpoint not found"):
        create_backbone("resnet18", checkpoint=tmp_path / "missing.pth")
