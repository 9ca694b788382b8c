"""The Adam optimisers run torch's fused kernels where the parameters allow: their steps equal
torch's per-tensor loop (the reference formulation) with the same groups, weight decay on the
matrices alone. No normalisation right after a bias: its gradient would be rounding alone, which
Adam's division by the gradient's magnitude turns into whole-lr steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cxrfast.train.optim import create_optimizer, split_decay


@pytest.mark.parametrize("name,reference", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)])
def test_fused_adam_steps_equal_torchs_loop(name, reference):
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GELU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    theirs = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GELU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    theirs.load_state_dict(ours.state_dict())
    optimizer = create_optimizer(name, [{"params": list(ours.parameters())}], lr=1e-2, weight_decay=0.05)
    assert all(group["fused"] for group in optimizer.param_groups)
    betas = (0.9, 0.95) if name == "adamw" else (0.9, 0.999)
    baseline = reference(split_decay([{"params": list(theirs.parameters())}], 0.05), lr=1e-2, betas=betas,
                         foreach=False)
    for step in range(5):
        x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(step))
        for model, opt in ((ours, optimizer), (theirs, baseline)):
            model(x).square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for (key, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=lambda m: f"{key}: {m}")
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(ours[0].weight), id(ours[3].weight)}
