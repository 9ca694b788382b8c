"""The oracle of GMML's corruption: the definition in `group_masking`, one image and one
rectangle at a time, as GMML's own code draws it (a Python loop that sums the mask after every
rectangle). Equal to `group_corruption` in distribution, not draw for draw; the baseline of its
benchmark."""

from __future__ import annotations

import torch
from torch import Tensor


def group_corruption_reference(images: Tensor, *, share: tuple[float, float] = (0.5, 0.75), replace: float = 0.5,
                               replace_share: float = 0.3, max_block: float = 0.3, align: int = 1,
                               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    b, c, height, width = images.shape
    integer = lambda low, high: int(torch.randint(low, high, (1,), generator=generator))  # noqa: E731
    corrupted, masks = images.clone(), torch.zeros(b, 1, height, width, dtype=torch.bool)
    for i in range(b):
        donor = None
        if b > 1 and float(torch.rand(1, generator=generator)) < replace:
            target, donor = replace_share, (i + integer(1, b)) % b
        else:
            target = share[0] + (share[1] - share[0]) * float(torch.rand(1, generator=generator))
        mask = masks[i, 0]
        while mask.sum() < target * height * width:
            r, q = integer(0, height // align) * align, integer(0, width // align) * align
            h = min(integer(1, max(1, int(height * max_block) // align) + 1) * align, height - r)
            w = min(integer(1, max(1, int(width * max_block) // align) + 1) * align, width - q)
            block = (slice(None), slice(r, r + h), slice(q, q + w))
            corrupted[i][block] = images[donor][block] if donor is not None else torch.randn(
                c, h, w, generator=generator, dtype=images.dtype)
            mask[r:r + h, q:q + w] = True
    return corrupted, masks
