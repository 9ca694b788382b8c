"""GMML on a small ViT: the loss counts corrupted pixels only (its value and its gradient), the
features are the chosen blocks' mean under the final norm (against running timm's blocks by
hand), a step trains backbone and head, the recipe holds GMML's settings, a pretraining run works
end to end with per-parameter clipping, and per-parameter clipping is DINO's definition."""

from __future__ import annotations

import importlib

import pytest
import torch

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.methods import GMML, create_method
from cxrfast.methods.gmml import masked_l1
from cxrfast.models import create_backbone, import_timm
from cxrfast.train import PretrainConfig, load_config, pretrain
from cxrfast.train.optim import clip_gradients
from cxrfast.train.recipes import recipe


def _vit(depth=4, size=32, channels=1):
    timm = import_timm()
    return timm.models.vision_transformer.VisionTransformer(img_size=size, patch_size=8, in_chans=channels,
                                                            num_classes=0,
                                                            embed_dim=32, depth=depth, num_heads=2)


def test_masked_l1_counts_the_masked_pixels_only():
    g = torch.Generator().manual_seed(0)
    target, reconstruction = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    mask = torch.rand(3, 1, 8, 8, generator=g) < 0.4
    reconstruction.requires_grad_()
    loss = masked_l1(reconstruction, target, mask)
    expected = (reconstruction - target).abs()[mask].mean()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert (reconstruction.grad[~mask] == 0).all() and (reconstruction.grad[mask] != 0).all()
    # Right where it is corrupted, wrong elsewhere: nothing to learn.
    assert float(masked_l1(torch.where(mask, target, target + 5), target, mask)) == 0


def test_features_are_the_mean_of_the_chosen_blocks_under_the_final_norm():
    vit = _vit().eval()
    method = GMML(vit, blocks=(2, 4))
    x = torch.rand(2, 1, 32, 32)
    tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
    outputs = []
    for block in vit.blocks:
        tokens = block(tokens)
        outputs.append(tokens[:, vit.num_prefix_tokens:])
    expected = vit.norm((outputs[1] + outputs[3]) / 2)
    torch.testing.assert_close(method.features(x), expected)
    assert method.features(x).shape == (2, 16, 32)


@pytest.mark.parametrize("channels", [1, 3])  # a radiograph, a CT slice's three windows
def test_a_step_reconstructs_corrupted_pixels_and_trains_backbone_and_head(channels):
    method = GMML(_vit(channels=channels), blocks=(2, 4))
    captured = {}
    method.head.register_forward_hook(lambda module, inputs, output: captured.update(output=output) or
                                      output.retain_grad())
    views = [torch.rand(4, channels, 32, 32), torch.rand(4, channels, 32, 32)]
    method.generator.manual_seed(0)
    loss = method.training_step(Batch(views=views))
    loss.backward()
    reconstruction = captured["output"]
    assert reconstruction.shape == (8, channels, 32, 32) and torch.isfinite(loss)
    # The same corruption again, from the same generator state: the gradient reaches exactly
    # its masked pixels.
    from cxrfast.nn.group_masking import group_corruption

    method.generator.manual_seed(0)
    clean = torch.cat(views)
    target = (clean - clean.mean()) / clean.std()
    masks = torch.cat([group_corruption(v, generator=method.generator, **method.corruption)[1]
                       for v in target.chunk(2)])
    assert ((reconstruction.grad != 0) == masks).all()
    assert masks.float().mean() > 0.25
    for name, parameter in method.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_gmml_refuses_what_it_cannot_train():
    with pytest.raises(ConfigError, match="needs a vision transformer"):
        create_method("gmml", create_backbone("resnet18"))
    with pytest.raises(ConfigError, match="blocks 1 to 4"):
        GMML(_vit(), blocks=(2, 6))
    with pytest.raises(ConfigError, match="corruption"):
        GMML(_vit(), blocks=(4,), share=(0.8, 0.5))


def test_the_recipe_holds_gmmls_settings():
    config = load_config(preset=recipe("gmml", "pretrain").values(), data=".")
    config.check()
    assert (config.method, config.backbone, config.image_size, config.optimizer) == ("gmml", "vit_small", 224, "adamw")
    assert (config.lr, config.min_lr, config.warmup_epochs, config.weight_decay, config.weight_decay_end) == \
        (5e-4, 1e-6, 10, 0.04, 0.4)
    assert (config.clip_grad, config.clip_grad_mode, config.drop_path, config.batch_size) == \
        (3.0, "per_parameter", 0.1, 64)
    assert GMML.augment_defaults["scale"] == (0.05, 1.0)
    assert config.method_options["blocks"] == [6, 8, 10, 12]


def test_a_gmml_run_end_to_end(tmp_path, phantoms, monkeypatch):
    pretraining = importlib.import_module("cxrfast.train.pretrain")  # the module, not its function
    built = []
    monkeypatch.setattr(pretraining, "create_backbone", lambda *a, **k: built.append(create_backbone(*a, **k)) or
                        built[-1])
    config = PretrainConfig(method="gmml", data=str(phantoms), backbone="vit_tiny_patch16_224", image_size=32,
                            out=str(tmp_path / "run"), epochs=1, batch_size=4, workers=0, warmup_epochs=0,
                            optimizer="adamw", lr=1e-3, clip_grad=3.0, clip_grad_mode="per_parameter",
                            drop_path=0.1)
    result = pretrain(config, progress=False)
    assert result.steps == 5 and all(torch.isfinite(torch.tensor(result.losses)))
    encoder = import_timm().create_model("vit_tiny_patch16_224", img_size=32, in_chans=1, num_classes=0,
                                         checkpoint_path=str(result.encoder))
    assert encoder.patch_embed.proj.weight.shape == (192, 1, 16, 16)
    torch.testing.assert_close(encoder.patch_embed.proj.weight, built[0].patch_embed.proj.weight)
    assert built[0].blocks[11].drop_path1.drop_prob == pytest.approx(0.1)  # stochastic depth in training


@pytest.mark.parametrize("mode", ["per_parameter", "global"])
def test_gradient_clipping_against_its_definition(mode):
    g = torch.Generator().manual_seed(1)
    parameters = [torch.nn.Parameter(torch.zeros(n)) for n in (3, 5, 7)]
    for p, scale in zip(parameters, (0.1, 2.0, 10.0)):
        p.grad = torch.randn(p.shape, generator=g) * scale
    before = [p.grad.clone() for p in parameters]
    clip_gradients(parameters, 1.0, mode)
    if mode == "per_parameter":  # DINO's utils.clip_gradients, parameter by parameter
        expected = [gr * min(1.0, 1.0 / (float(gr.norm()) + 1e-6)) for gr in before]
    else:
        total = float(torch.cat(before).norm())
        expected = [gr * min(1.0, 1.0 / (total + 1e-6)) for gr in before]
    for p, e in zip(parameters, expected):
        torch.testing.assert_close(p.grad, e)
    after = [float(p.grad.norm()) for p in parameters]
    if mode == "per_parameter":  # the small one kept, the large ones at the limit
        assert after[0] == pytest.approx(float(before[0].norm())) and after[2] == pytest.approx(1, abs=1e-5)
    else:
        assert float(torch.cat([p.grad for p in parameters]).norm()) == pytest.approx(1, abs=1e-5)
