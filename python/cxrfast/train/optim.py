"""Optimisers: AdamW and Adam (torch; Adam's weight decay is the L2 term in the gradient, as
Wolf et al.'s and vit-med's CNN runs use it), LAMB and LARS (timm's implementations, which SparK
and SimCLR's recipes use), and gradient clipping, global or per parameter. Biases and
normalisation parameters get no weight decay, and LARS does not adapt their rate: the usual
exclusions of those papers.

An objective hands the optimiser its parameters in groups (`Objective.parameter_groups`), each
with an `lr_factor`: the loop sets each group's learning rate to the schedule's times that
factor at every step, so a group's rate (a backbone's own, a ViT layer's decay) is the one the
optimiser really uses."""

from __future__ import annotations

import torch

from cxrfast.errors import ConfigError
from cxrfast.models import import_timm


def split_decay(groups: list[dict], weight_decay: float) -> list[dict]:
    """Each group twice: its matrices with weight decay, its vectors (biases, norms) without."""
    split = []
    for group in groups:
        factor = group.get("lr_factor", 1.0)
        params = list(group["params"])
        decay, no_decay = [p for p in params if p.ndim > 1], [p for p in params if p.ndim <= 1]
        split += [{"params": decay, "decays": True, "lr_factor": factor, "weight_decay": weight_decay},
                  {"params": no_decay, "decays": False, "lr_factor": factor, "weight_decay": 0.0}]
    return split


def _fusable(groups: list[dict]) -> bool:
    """Whether torch's fused Adam kernels take these parameters: one pass per tensor instead of a
    dozen operations each. On the CPU torch's default is its per-tensor loop, about 5× slower (a
    ResNet-18 step: 60 against 12 ms on this 2-core machine)."""
    return all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for g in groups for p in g["params"])


def create_optimizer(name: str, groups: list[dict], lr: float, weight_decay: float,
                     betas: tuple[float, float] | None = None) -> torch.optim.Optimizer:
    """`betas`: Adam's, where the optimiser has them; default (0.9, 0.95) for AdamW and LAMB (the
    pretraining recipes'), torch's (0.9, 0.999) for Adam."""
    groups = split_decay(groups, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas or (0.9, 0.95)), fused=_fusable(groups))
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(betas or (0.9, 0.999)), fused=_fusable(groups))
    import_timm()  # timm.optim imports timm, which needs its torchvision shim first
    from timm import optim
    if name == "lamb":
        return optim.Lamb(groups, lr=lr, betas=tuple(betas or (0.9, 0.95)), max_grad_norm=None)
    if name == "lars":  # trust ratios only where weight decay applies (timm's default)
        return optim.Lars(groups, lr=lr, momentum=0.9, trust_coeff=0.001)
    raise ConfigError(f"unknown optimizer {name!r}: one of adamw, adam, lamb, lars")


def clip_gradients(parameters, max_norm: float, mode: str = "global") -> None:
    """Scale gradients in place to norm at most `max_norm`: `global`, all of them together
    (torch's clip_grad_norm_); `per_parameter`, each parameter's on its own, as DINO's and GMML's
    code clip (norm + 1e-6 in the divisor)."""
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        norms = torch.stack(torch._foreach_norm(grads))
        torch._foreach_mul_(grads, list((max_norm / (norms + 1e-6)).clamp(max=1.0).unbind()))
