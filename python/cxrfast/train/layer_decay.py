"""Layer-wise learning-rate decay for ViTs, MAE's convention (BEiT's before it): the patch and
position embeddings and the class token are layer 0, block i is layer i + 1, everything after the
blocks (the final norm, the classifier) is layer L = depth + 1, and layer l trains at decay^(L − l)
times the learning rate. The factor goes into each group's `lr_factor`, which the training loop
multiplies into the group's `lr` at every step: timm's and solo-learn's `lr_scale` is read only by
timm's own schedulers, so with any other schedule their decay silently does nothing."""

from __future__ import annotations

from torch import nn

from cxrfast.errors import ConfigError

_EMBEDDINGS = ("cls_token", "reg_token", "pos_embed", "patch_embed", "dist_token")


def vit_layer(name: str, depth: int) -> int:
    """MAE's layer number of the parameter `name` of a timm ViT with `depth` blocks."""
    if name.split(".")[0] in _EMBEDDINGS:
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_decay_groups(model: nn.Module, decay: float, parameters: set[nn.Parameter] | None = None) -> list[dict]:
    """One group per layer of `model` (a timm ViT: it has `blocks`), `lr_factor` = decay^(L − l),
    holding the parameters of `parameters` (all of the model's by default), embeddings first."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential | nn.ModuleList):
        raise ConfigError(f"layer_decay: applies to ViTs (timm models with .blocks); {type(model).__name__} has none")
    if not 0 < decay <= 1:
        raise ConfigError(f"layer_decay must be in (0, 1], not {decay}")
    depth = len(blocks)
    layers: dict[int, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameters is None or parameter in parameters:
            layers.setdefault(vit_layer(name, depth), []).append(parameter)
    return [{"params": layers[layer], "lr_factor": decay ** (depth + 1 - layer)} for layer in sorted(layers)]
