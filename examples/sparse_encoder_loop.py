"""SparK's sparse encoder around your own timm CNN, in a plain PyTorch loop.

cxrfast supplies what is SparK's: the encoder that computes the visible patches alone
(`SparseEncoder`, which swaps the network's layers for sparse ones in place), the mask
(`spark_mask`) and the loss on the masked patches (`masked_patch_loss`). The network, the
decoder, the optimiser and the loop are yours. The decoder here is deliberately small: the
deepest stage, a learned token where a patch is masked, then two convolutions to each 32 × 32
patch's pixels. `encoder.restore()` gives the network back with its ordinary layers and the
trained weights, to fine-tune or save like any timm model.

    python examples/sparse_encoder_loop.py --steps 200
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import cxrfast  # noqa: F401  (first: then `import timm` works beside a CPU torch, docs/drop-in.md)
import timm
from cxrfast.data.synthetic import make_phantom
from cxrfast.methods.spark import masked_patch_loss
from cxrfast.nn import SparseEncoder
from cxrfast.nn.masking import spark_mask

PATCH = 32


class PatchDecoder(nn.Module):
    def __init__(self, channels: int, width: int = 128):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.layers = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.GELU(),
                                    nn.Conv2d(width, PATCH * PATCH, 1), nn.PixelShuffle(PATCH))

    def forward(self, deepest: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.where(visible[:, None], deepest, self.mask_token))


def phantoms(count: int, size: int) -> torch.Tensor:
    """(count, 1, size, size) synthetic radiographs in [0, 1]: no data to download."""
    return torch.from_numpy(np.stack([make_phantom(seed, size, size).image for seed in range(count)]))[:, None]


def train(images: torch.Tensor, steps: int, *, batch: int = 8, mask_ratio: float = 0.6, seed: int = 0):
    """Your loop: returns the loss of every step and the network with its dense layers back."""
    torch.manual_seed(seed)
    backbone = timm.create_model("resnet18", in_chans=1, num_classes=0)
    encoder = SparseEncoder(backbone)  # stages from timm's feature_info; patches of the deepest stride
    decoder = PatchDecoder(backbone.num_features)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *decoder.parameters()], lr=1e-3, weight_decay=0.05)
    generator = torch.Generator().manual_seed(seed)
    rows, columns = images.shape[-2] // PATCH, images.shape[-1] // PATCH
    losses = []
    for _ in range(steps):
        views = images[torch.randint(len(images), (batch,), generator=generator)]
        visible = spark_mask(batch, rows, columns, mask_ratio, generator=generator)
        deepest = encoder(views, visible)[-1]  # per-stage dense maps, zero where masked
        loss = masked_patch_loss(decoder(deepest, visible), views, visible, PATCH)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses, encoder.restore()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    losses, network = train(phantoms(args.images, args.size), args.steps)
    print(f"masked-patch loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}; "
          f"the trained {type(network).__name__} is a plain timm model again")


if __name__ == "__main__":
    main()
