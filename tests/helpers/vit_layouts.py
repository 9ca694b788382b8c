"""ViT state dicts written in the layouts users have on disk, from each layout's own key names
(not cxrfast's maps): DINOv2's original and transformers' Dinov2Model, from a timm model."""

from __future__ import annotations

import torch


def dinov2_layout(model, registers: bool) -> dict:
    """DINOv2's own layout: a mask token, registers as `register_tokens`, and (with registers) a
    position embedding over the class token too, which timm folds into `cls_token`."""
    state, width = {k: v.clone() for k, v in model.state_dict().items()}, model.embed_dim
    state["mask_token"] = torch.zeros(1, width)
    if registers:
        class_position = torch.randn(1, 1, width)
        state["register_tokens"] = state.pop("reg_token")
        state["cls_token"] = state["cls_token"] - class_position
        state["pos_embed"] = torch.cat([class_position, state["pos_embed"]], 1)
    return state


def huggingface_layout(model, registers: bool) -> dict:
    """transformers' Dinov2Model names, query, key and value apart, under Dinov2ForImageClassification's
    `dinov2.` prefix with its classifier beside it."""
    original, width = dinov2_layout(model, registers), model.embed_dim
    names = {"cls_token": "embeddings.cls_token", "mask_token": "embeddings.mask_token",
             "pos_embed": "embeddings.position_embeddings", "register_tokens": "embeddings.register_tokens",
             "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
             "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
             "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
    layer = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.output.dense", "mlp.fc1": "mlp.fc1",
             "mlp.fc2": "mlp.fc2"}
    out = {"classifier.weight": torch.zeros(5, 2 * width), "classifier.bias": torch.zeros(5)}
    for key, value in original.items():
        if key in names:
            out[f"dinov2.{names[key]}"] = value
            continue
        _, block, rest = key.split(".", 2)
        prefix = f"dinov2.encoder.layer.{block}"
        if rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for part, chunk in zip(("query", "key", "value"), value.chunk(3)):
                out[f"{prefix}.attention.attention.{part}.{kind}"] = chunk
        elif rest.startswith("ls"):
            out[f"{prefix}.layer_scale{rest[2]}.lambda1"] = value
        else:
            module, kind = rest.rsplit(".", 1)
            out[f"{prefix}.{layer[module]}.{kind}"] = value
    return {k: v.contiguous() for k, v in out.items()}
