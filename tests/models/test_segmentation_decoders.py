"""The UNet over a timm CNN's stages: full-resolution logits for stems of stride 2 and 4, the
backbone's own state-dict keys under `encoder.`, and clear errors for what it cannot take."""

from __future__ import annotations

import pytest
import torch

from cxrfast.models import create_backbone
from cxrfast.models.decoders.unet import UNet


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto"])  # stems at stride 2 and 4
def test_logits_at_the_input_size_over_the_backbones_own_weights(name):
    torch.manual_seed(0)
    backbone = create_backbone(name)
    own = {k: v.clone() for k, v in backbone.state_dict().items()}
    unet = UNet(backbone).eval()
    assert unet(torch.rand(2, 1, 64, 96)).shape == (2, 1, 64, 96)
    state = unet.state_dict()
    for key, value in own.items():
        assert torch.equal(state[f"encoder.{key}"], value), key  # a pretrained encoder loads as it is
    # The encoder's stages are what the decoder reads: the deepest one is the backbone's own output.
    with torch.no_grad():
        deepest = unet.encoder.forward_intermediates(torch.rand(1, 1, 64, 64), indices=unet.stages,
                                                     intermediates_only=True)[-1]
    assert deepest.shape[1] == backbone.feature_info[-1]["num_chs"] and deepest.shape[-1] == 64 // unet.stride


def test_backbones_without_stages_are_refused():
    with pytest.raises(ValueError, match="strides 2, 4, 8"):
        UNet(create_backbone("vit_tiny_patch16_224", image_size=32))
    with pytest.raises(ValueError, match="no feature_info"):
        UNet(torch.nn.Conv2d(1, 1, 3))


def test_setr_pup_gives_a_vits_tokens_back_their_grid_at_the_input_size():
    from cxrfast.losses.segmentation import dice_bce
    from cxrfast.models.decoders import ProgressiveUpsampling

    torch.manual_seed(0)
    vit = create_backbone("vit_tiny_patch16_224", image_size=64)
    own = {k: v.clone() for k, v in vit.state_dict().items()}
    decoder = ProgressiveUpsampling(vit)
    assert len(decoder.blocks) == 4  # 16 = 2^4
    assert decoder(torch.rand(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    assert all(torch.equal(decoder.state_dict()[f"encoder.{k}"], v) for k, v in own.items())
    # It can learn a mask: 15 steps on one batch halve the loss.
    images = torch.rand(4, 1, 64, 64)
    images[:, :, :32] += 1.0
    masks = torch.zeros(4, 1, 64, 64)
    masks[:, :, :32] = 1.0
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = dice_bce(decoder(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="SETR-PUP needs a timm ViT"):
        ProgressiveUpsampling(create_backbone("resnet18"))
