"""Backbones by name with a 1-channel stem (or one per CT window), supervised weights from a local
file, and the export of a pretrained encoder that timm loads back.

    encoder = create_backbone("resnet50", checkpoint="resnet50_imagenet.safetensors")
    export_encoder(encoder, "run/encoder.safetensors")
    timm.create_model("resnet50", in_chans=1, num_classes=0, checkpoint_path="run/encoder.safetensors")

A checkpoint may be a timm or torchvision state dict (`.pth`, `.pt`, `.bin`, wrapped in
"state_dict" / "model" or not, "module." prefixes from DDP allowed) or a safetensors file. Its
RGB first convolution is summed over the colour channels (timm's `adapt_input_conv`): a grey
image fed to an RGB network as three equal channels gives exactly that response. The classifier
is dropped: the encoder ends at pooled features. A CT cache with several windows as channels gets
a stem of that many (`in_chans`), an RGB checkpoint's stem repeated over them. A ViT's checkpoint may also be DINOv2's original
file or transformers' Dinov2Model (`cxrfast.models.vit_checkpoints`):

    create_backbone("vit_base_patch14_dinov2", checkpoint="dinov2_vitb14_pretrain.pth", image_size=224)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import nn

from cxrfast.atomic import atomic_path
from cxrfast.errors import ConfigError
from cxrfast.models.timm_import import import_timm
from cxrfast.models.vit_checkpoints import is_vit, timm_state_dict

# cxrfast's names and timm's. The ViTs are for methods still to come.
BACKBONES = {"resnet18": "resnet18", "resnet50": "resnet50", "convnext_tiny": "convnext_tiny",
             "convnext_small": "convnext_small", "vit_small": "vit_small_patch16_224",
             "vit_base": "vit_base_patch16_224"}
_WRAPPERS = ("state_dict", "model", "module")


def timm_name(name: str) -> str:
    """timm's model name for one of `BACKBONES` (or any timm name, passed through for tests and
    experiments with other families)."""
    timm = import_timm()
    if name in BACKBONES:
        return BACKBONES[name]
    if name in timm.list_models():
        return name
    raise ConfigError(f"unknown backbone {name!r}: cxrfast supports {', '.join(BACKBONES)} "
                      "(or any timm model name)")


def create_backbone(name: str, *, checkpoint: str | os.PathLike | None = None, image_size: int | None = None,
                    pool: str | None = None, in_chans: int = 1, **kwargs) -> nn.Module:
    """A timm backbone with an `in_chans`-channel stem and no classifier (`num_classes=0`), optionally
    initialised from a supervised checkpoint on disk (nothing is downloaded). A transformer
    whose patch embedding has a fixed input size is built for `image_size` (CNNs take any); a
    timm ViT also takes other sizes, resampling its position embedding, and ends at its `pool`:
    "token", the normalised class token (timm's and vit-med's), or "avg", the mean of the
    normalised patch tokens."""
    create = functools.partial(import_timm().create_model, timm_name(name), in_chans=in_chans, num_classes=0,
                               pretrained=False, **kwargs)
    model = create()
    fixed = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if fixed is not None and getattr(model, "dynamic_img_size", True) is False:
        # A ViT: built for the run's size, and taking other sizes too (DINO's local crops), its
        # position embedding resampled on the fly.
        pooling = {} if pool is None else {"global_pool": pool, "fc_norm": False}  # the final norm stays
        model = create(img_size=image_size or tuple(fixed), dynamic_img_size=True, **pooling)
    elif pool is not None:
        raise ConfigError(f"pool {pool!r} chooses a vision transformer's features; {name} pools its own")
    elif image_size is not None and fixed is not None and tuple(fixed) != (image_size, image_size) \
            and not getattr(model.patch_embed, "dynamic_img_size", False):
        model = create(img_size=image_size)
    if checkpoint is not None:
        load_supervised(model, checkpoint)
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which
        raise ConfigError(f"{path}: not a readable state dict ({e})") from e
    while isinstance(state, dict):  # {"model": {...}, "optimizer": ...} and the like
        inner = next((state[k] for k in _WRAPPERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_supervised(model: nn.Module, path: str | os.PathLike, *, rgb: bool = True) -> None:
    """Load a (supervised, `rgb`) checkpoint into a classifier-free backbone of one or more input
    channels; a ViT's in any layout `vit_checkpoints` reads, resampled to the model's grid. A
    stem that is not RGB (a pretraining run's: three CT windows are not colours) must match the
    model's."""
    timm = import_timm()
    state = read_state_dict(path)
    if is_vit(model):
        state = timm_state_dict(state, model, str(path))
    own = model.state_dict()
    first_conv = _first_conv_weight(model)
    if first_conv in state and state[first_conv].shape[1] != own[first_conv].shape[1]:
        if not rgb or state[first_conv].shape[1] != 3:  # timm adapts RGB stems only
            raise ConfigError(f"{path}: its stem takes {state[first_conv].shape[1]} channels, the images "
                              f"{own[first_conv].shape[1]}; pretrain on images of the same channels (CT windows)")
        state[first_conv] = timm.models.adapt_input_conv(own[first_conv].shape[1], state[first_conv])
    state = {k: v for k, v in state.items() if k in own}  # the classifier and the like
    missing = [k for k in own if k not in state]
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if missing or wrong:
        raise ConfigError(f"{path}: does not fit {type(model).__name__}: "
                          + "; ".join(filter(None, [f"missing {missing[:5]}" if missing else "",
                                                    f"shapes {wrong[:5]}" if wrong else ""])))
    model.load_state_dict(state)


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


def _first_conv_weight(model: nn.Module) -> str:
    return f"{_first_conv(model)[0]}.weight"


def input_channels(model: nn.Module) -> int:
    """The channels a backbone's stem takes (its first convolution's, a ViT's patch embedding)."""
    return _first_conv(model)[1].in_channels


def export_encoder(model: nn.Module, path: str | os.PathLike) -> Path:
    """The encoder's weights as a safetensors file that `timm.create_model(name, in_chans=C,
    num_classes=0, checkpoint_path=path)` loads strictly (and, with `num_classes=K`, through
    `pretrained_cfg_overlay=dict(file=path)`, as a fine-tuning start). Written atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(state, temporary, metadata={"format": "pt", "producer": "cxrfast"})
    return Path(path)
