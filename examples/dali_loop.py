"""cxrfast's DALI pipeline feeding your own loop: `DaliLoader` reads DICOM (or a prepared cache),
decodes, windows and augments in DALI (on the GPU where there is one, on the CPU here), and yields
the views a cxrfast method asks for; your loop steps the method and its optimiser.

The loader's order is `EpochLoader`'s (a seeded shuffle, sharded by rank), so either loader can
feed the same loop; `state_dict()` resumes it at the next batch. A DALI GPU build also decodes
JPEG 2000 and JPEG on the device (see docs/preparing-data.md, the loaders).

    python examples/dali_loop.py DICOM_FOLDER --epochs 3   # cxrfast phantoms FOLDER writes synthetic DICOM
"""

from __future__ import annotations

import argparse

import torch

from cxrfast.data.dali import DaliLoader
from cxrfast.methods import create_method, method_class
from cxrfast.models import create_backbone


def train(folder, epochs: int, *, image_size: int = 64, batch_size: int = 8, seed: int = 0):
    """Your loop over DALI's batches: returns the loss of every step and the batches per epoch."""
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    method = create_method("spark", create_backbone("resnet18"), image_size).to(device)
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3, weight_decay=0.05)
    loader = DaliLoader(folder, batch_size, crops=method_class("spark").crops(image_size, {}, {}), device=device,
                        workers=1, seed=seed)
    losses, batches = [], []
    for _ in range(epochs):  # each pass over the loader is the next epoch
        count = 0
        for batch in loader:  # a cxrfast Batch: batch.views[0] is (batch_size, 1, image_size, image_size)
            loss = method.training_step(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            count += 1
        batches.append(count)
    return losses, batches, len(loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="DICOM files (`cxrfast phantoms FOLDER --rows 128` writes some)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    losses, _, _ = train(args.folder, args.epochs)
    print(f"SparK's loss {sum(losses[:5]) / 5:.3f} -> {sum(losses[-5:]) / 5:.3f} over {len(losses)} DALI batches")


if __name__ == "__main__":
    main()
