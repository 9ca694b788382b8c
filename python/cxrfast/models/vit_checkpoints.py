"""Vision-transformer checkpoints in the layouts users keep on disk, read into timm's.

- timm's own (e.g. `vit_base_patch14_dinov2.lvd142m`, `vit_base_patch16_224.augreg_in21k`) and
  cxrfast's exports, which are timm's;
- DINOv2's original `.pth` (torch.hub's `dinov2_vitb14_pretrain.pth`: `mask_token`, optional
  `register_tokens`), which timm's checkpoint filter converts;
- Hugging Face transformers' `Dinov2Model` / `Dinov2WithRegistersModel` (`model.safetensors`:
  query, key and value apart, `layer_scale*.lambda1`), renamed here into DINOv2's layout first.

Then timm's filter resamples the position embedding to the model's grid (bicubic) and the patch
embedding to its patch size, and the caller sums an RGB patch embedding to one channel. Which
layout a file holds is read from its keys; one that is none of these is an error naming what
each would have.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from cxrfast.errors import ConfigError
from cxrfast.models.timm_import import import_timm

# The key that marks each layout, in the order they are tried.
MARKERS = {"huggingface": "embeddings.patch_embeddings.projection.weight", "dinov2": "mask_token",
           "timm": "patch_embed.proj.weight"}
_HF_PREFIXES = ("dinov2.", "model.")  # Dinov2ForImageClassification and wrappers hold the encoder under these

# transformers' per-layer names -> DINOv2's (block i's)
_HF_LAYER = {"norm1": "norm1", "norm2": "norm2", "attention.output.dense": "attn.proj", "mlp.fc1": "mlp.fc1",
             "mlp.fc2": "mlp.fc2", "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
_HF_TOP = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
           "embeddings.position_embeddings": "pos_embed", "embeddings.register_tokens": "register_tokens",
           "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
           "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
           "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}


def is_vit(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def layout(state: dict[str, Tensor], source: str) -> str:
    """Which of MARKERS' layouts `state` holds, else a ConfigError listing them."""
    for name, marker in MARKERS.items():
        prefixes = ("", *_HF_PREFIXES) if name == "huggingface" else ("",)
        if any(f"{prefix}{marker}" in state for prefix in prefixes):
            return name
    expected = "; ".join(f"{name}: a key {marker!r}" for name, marker in MARKERS.items())
    raise ConfigError(f"{source}: not a vision-transformer layout cxrfast reads (expected {expected}; "
                      f"it has {sorted(state)[:6]}...)")


def huggingface_to_dinov2(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' Dinov2Model keys -> DINOv2's original ones (query, key, value joined)."""
    for prefix in _HF_PREFIXES:
        if f"{prefix}{MARKERS['huggingface']}" in state:
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    out, attention = {}, {}
    for key, value in state.items():
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
            continue
        m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)", key)
        if m is None:
            continue  # a pooler or classifier: the backbone ends before them
        block, name, kind = m.groups()
        q = re.fullmatch(r"attention\.attention\.(query|key|value)", name)
        if q:
            attention[(block, kind, q.group(1))] = value
        elif f"{name}.{kind}" in _HF_LAYER or name in _HF_LAYER:
            target = _HF_LAYER.get(f"{name}.{kind}") or f"{_HF_LAYER[name]}.{kind}"
            out[f"blocks.{block}.{target}"] = value
        else:
            raise ConfigError(f"transformers' Dinov2 key {key!r} has no counterpart in timm's ViT "
                              "(the SwiGLU MLP of ViT-g is not read)")
    for block, kind in sorted({(b, k) for b, k, _ in attention}):
        parts = [attention.get((block, kind, p)) for p in ("query", "key", "value")]
        if any(p is None for p in parts):
            raise ConfigError(f"block {block}'s attention lacks one of query, key, value ({kind})")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(parts)
    return out


def timm_state_dict(state: dict[str, Tensor], model: nn.Module, source: str) -> dict[str, Tensor]:
    """`state` in any of the layouts, as timm's for `model`: position embedding resampled to its
    grid, patch embedding to its patch size (its channels are the caller's)."""
    if layout(state, source) == "huggingface":
        state = huggingface_to_dinov2(state)
    return import_timm().models.vision_transformer.checkpoint_filter_fn(state, model)
