"""ViT checkpoints in the layouts users have: a small DINOv2-style ViT with random RGB weights is
written by this test in each layout (timm's, DINOv2's original .pth with and without registers,
transformers' Dinov2Model safetensors, cxrfast's export), from each layout's own key names; each
loads into cxrfast's 1-channel backbone and gives the original's features on grey images at the
original resolution, and close ones after the position embedding is resampled."""

from __future__ import annotations

import pytest
import torch
from helpers.vit_layouts import dinov2_layout, huggingface_layout
from safetensors.torch import save_file

from cxrfast.errors import ConfigError
from cxrfast.models import create_backbone, export_encoder, import_timm

SIZE = dict(depth=2, embed_dim=48, num_heads=2)
NAMES = {False: "vit_small_patch14_dinov2", True: "vit_small_patch14_reg4_dinov2"}  # registers or not


def _original(registers: bool):
    """The RGB network a user's file came from, every parameter random (layer scales included)."""
    torch.manual_seed(3)
    model = import_timm().create_model(NAMES[registers], pretrained=False, in_chans=3, num_classes=0, img_size=56,
                                       dynamic_img_size=True, **SIZE).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.5 if p.ndim == 1 else 0.05))
    return model


def _write(tmp_path, layout: str, model, registers: bool):
    if layout == "timm":
        path = tmp_path / "timm.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    elif layout == "dinov2":
        path = tmp_path / "dinov2_vits14_pretrain.pth"
        torch.save(dinov2_layout(model, registers), path)
    else:
        path = tmp_path / "model.safetensors"
        save_file(huggingface_layout(model, registers), path)
    return path


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "registers"])
@pytest.mark.parametrize("layout", ["timm", "dinov2", "huggingface"])
def test_each_layout_gives_the_originals_features(tmp_path, layout, registers):
    original = _original(registers)
    path = _write(tmp_path, layout, original, registers)
    grey = torch.rand(2, 1, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = create_backbone(NAMES[registers], checkpoint=path, image_size=56, **SIZE).eval()
        torch.testing.assert_close(ours(grey), original(grey.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)
        # At 84² (a 6 × 6 grid for the file's 4 × 4) the embedding is resampled once, at load:
        # timm's on-the-fly resampling of the original gives close features.
        larger = torch.rand(2, 1, 84, 84, generator=torch.Generator().manual_seed(1))
        resampled = create_backbone(NAMES[registers], checkpoint=path, image_size=84, **SIZE).eval()
        assert resampled.pos_embed.shape[1] == 36 + (0 if registers else 1)
        torch.testing.assert_close(resampled(larger), original(larger.expand(-1, 3, -1, -1)), rtol=1e-3, atol=1e-3)


def test_cxrfasts_export_loads_back(tmp_path):
    encoder = create_backbone(NAMES[False], image_size=56, **SIZE).eval()
    path = export_encoder(encoder, tmp_path / "encoder.safetensors")
    again = create_backbone(NAMES[False], checkpoint=path, image_size=56, **SIZE).eval()
    grey = torch.rand(1, 1, 56, 56)
    with torch.no_grad():
        assert torch.equal(again(grey), encoder(grey))


def test_an_unknown_layout_names_the_ones_expected(tmp_path):
    save_file({"trunk.stem.weight": torch.zeros(4, 3, 14, 14)}, tmp_path / "odd.safetensors")
    with pytest.raises(ConfigError, match=r"odd.safetensors: not a vision-transformer layout .*"
                                          r"huggingface: a key 'embeddings.patch_embeddings.projection.weight'"):
        create_backbone(NAMES[False], checkpoint=tmp_path / "odd.safetensors", image_size=56, **SIZE)
    hf = huggingface_layout(_original(False), False)
    del hf["dinov2.encoder.layer.1.attention.attention.key.weight"]
    save_file(hf, tmp_path / "broken.safetensors")
    with pytest.raises(ConfigError, match="block 1's attention lacks one of query, key, value"):
        create_backbone(NAMES[False], checkpoint=tmp_path / "broken.safetensors", image_size=56, **SIZE)


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "registers"])
def test_the_classifier_sits_on_the_class_token_or_the_mean_patch_token(tmp_path, registers):
    original = _original(registers)
    path = _write(tmp_path, "dinov2", original, registers)
    grey = torch.rand(2, 1, 56, 56, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens = original.forward_features(grey.expand(-1, 3, -1, -1))  # (B, prefix + patches, D), normalised
        for pool, expected in (("token", tokens[:, 0]), ("avg", tokens[:, original.num_prefix_tokens:].mean(1))):
            ours = create_backbone(NAMES[registers], checkpoint=path, image_size=56, pool=pool, **SIZE).eval()
            torch.testing.assert_close(ours(grey), expected, rtol=1e-4, atol=1e-5)


def test_pool_is_for_vision_transformers():
    with pytest.raises(ConfigError, match="pool 'avg' chooses a vision transformer's features; resnet18"):
        create_backbone("resnet18", pool="avg")
    from cxrfast.train.config import FinetuneConfig

    with pytest.raises(ConfigError, match="pool must be one of token, avg"):
        FinetuneConfig(data=".", pool="max").check()
