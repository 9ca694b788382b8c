"""cxrfast's DICOM reader and loader inside your own Dataset and training loop, with its NT-Xent.

Your Dataset reads each file with `read_dicom` (display values in [0, 1]: the VOI LUT or window,
MONOCHROME1 inverted, padding 0; every transfer syntax cxrfast decodes) and makes its own two
views; `EpochLoader` batches it (each image once per epoch, reshuffled by seed and epoch, sharded
by rank under torchrun, resumable mid-epoch); your loop trains SimCLR with cxrfast's
`NTXentLoss`, lightly's call signature (`loss(z0, z1)`).

    cxrfast phantoms phantoms --count 64 --rows 128       # synthetic DICOM, if you have none at hand
    python examples/dicom_dataset_loop.py phantoms --epochs 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import cxrfast  # noqa: F401  (first: then `import timm` works beside a CPU torch, docs/drop-in.md)
import timm
from cxrfast.data.loader import EpochLoader
from cxrfast.io.dicom import read_dicom
from cxrfast.losses import NTXentLoss


class TwoViewDicomFolder(Dataset):
    """Your own Dataset: every .dcm under a folder, two random crops (half to all of the side)
    resized to `size`, flipped at random, and the image's index."""

    def __init__(self, folder: str | Path, size: int = 64):
        self.files, self.size = sorted(Path(folder).rglob("*.dcm")), size

    def __len__(self) -> int:
        return len(self.files)

    def view(self, image: torch.Tensor) -> torch.Tensor:
        side = min(image.shape[-2:])
        crop = int(side * (0.5 + 0.5 * torch.rand(()).item()))
        top, left = (torch.randint(n - crop + 1, ()).item() for n in image.shape[-2:])
        patch = image[None, :, top:top + crop, left:left + crop]
        patch = F.interpolate(patch, size=(self.size, self.size), mode="bilinear", antialias=True)[0]
        return patch.flip(-1) if torch.rand(()) < 0.5 else patch

    def __getitem__(self, index: int):
        image = torch.from_numpy(read_dicom(self.files[index]).pixels)[None]  # (1, rows, columns)
        return self.view(image), self.view(image), index


def train(folder: str | Path, epochs: int, *, batch: int = 8, workers: int = 0, seed: int = 0):
    """Your loop: returns the mean loss of each epoch and the indices each epoch saw."""
    torch.manual_seed(seed)
    encoder = timm.create_model("resnet18", in_chans=1, num_classes=0)
    projection = nn.Sequential(nn.Linear(encoder.num_features, 128), nn.ReLU(), nn.Linear(128, 32))
    criterion = NTXentLoss(temperature=0.2)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *projection.parameters()], lr=1e-3)
    loader = EpochLoader(TwoViewDicomFolder(folder), batch, workers=workers, seed=seed)
    losses, seen = [], []
    for _ in range(epochs):  # each pass over the loader is the next epoch
        total, indices = 0.0, []
        for view0, view1, index in loader:
            loss = criterion(projection(encoder(view0)), projection(encoder(view1)))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            total += float(loss.detach())
            indices += index.tolist()
        losses.append(total / len(loader))
        seen.append(indices)
    return losses, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="DICOM files (`cxrfast phantoms FOLDER --rows 128` writes some)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    losses, _ = train(args.folder, args.epochs, workers=args.workers)
    print("NT-Xent per epoch:", " ".join(f"{loss:.3f}" for loss in losses))


if __name__ == "__main__":
    main()
