"""cxrfast's losses in a lightly training loop: lightly's models, heads and transforms, cxrfast's
`NTXentLoss` or `DINOLoss` where lightly's would be.

The loop is lightly's SimCLR and DINO tutorials on a folder of DICOM radiographs: `read_dicom`
gives display values, which become a PIL image for lightly's transforms; the backbone is
torchvision's ResNet-18 without its classifier, the heads lightly's `SimCLRProjectionHead` and
`DINOProjectionHead`, the teacher an EMA copy via lightly's `update_momentum`. Only the loss is
cxrfast's: the same call as lightly's (`loss(z0, z1)`; for DINO the student's crops first, then
the teacher's, where lightly takes the teacher's first) and the same value and gradients, from
kernels that never hold the whole similarity matrix. lightly has no SigLIP loss to replace.

    cxrfast phantoms phantoms --count 64 --rows 128       # synthetic DICOM, if you have none at hand
    python examples/lightly_loop.py phantoms --method dino --epochs 5
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

import cxrfast  # noqa: F401  (first: then torchvision and lightly import beside a CPU torch, docs/drop-in.md)
import torchvision
from lightly.models.modules import DINOProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import DINOTransform, SimCLRTransform
from lightly.utils.scheduler import cosine_schedule

from cxrfast.io.dicom import read_dicom
from cxrfast.losses import DINOLoss, NTXentLoss

DINO_DIM = 1024  # prototypes of the DINO head; lightly's tutorial uses 2048


class DicomViews(Dataset):
    """Every .dcm under a folder as a PIL image of its display values, through a lightly transform."""

    def __init__(self, folder: str | Path, transform):
        self.files, self.transform = sorted(Path(folder).rglob("*.dcm")), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        pixels = read_dicom(self.files[index]).pixels  # [0, 1], MONOCHROME1 already inverted
        image = Image.fromarray(np.round(pixels * 255).astype(np.uint8)).convert("RGB")
        return self.transform(image)  # a list of views


def resnet18_backbone() -> nn.Module:
    resnet = torchvision.models.resnet18()
    return nn.Sequential(*list(resnet.children())[:-1], nn.Flatten())


class SimCLR(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = resnet18_backbone()
        self.projection_head = SimCLRProjectionHead(512, 512, 128)

    def forward(self, x):
        return self.projection_head(self.backbone(x))


class DINO(nn.Module):
    def __init__(self):
        super().__init__()
        self.student_backbone = resnet18_backbone()
        self.student_head = DINOProjectionHead(512, 512, 64, DINO_DIM, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(self.student_backbone)
        self.teacher_head = DINOProjectionHead(512, 512, 64, DINO_DIM)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

    def forward(self, x):
        return self.student_head(self.student_backbone(x))

    def forward_teacher(self, x):
        return self.teacher_head(self.teacher_backbone(x))


def setup(method: str, size: int):
    """lightly's model and transform for the method, and cxrfast's loss in place of lightly's."""
    if method == "simclr":
        return SimCLR(), SimCLRTransform(input_size=size, min_scale=0.35), NTXentLoss(temperature=0.5)
    if method == "dino":
        transform = DINOTransform(global_crop_size=size, local_crop_size=size // 2, n_local_views=2)
        return DINO(), transform, DINOLoss(DINO_DIM, teacher_temp=0.04, student_temp=0.1)
    raise ValueError(f"method must be simclr or dino, not {method!r}")


def embeddings(method: str, model: nn.Module, views: list[torch.Tensor]):
    """What the loss compares: SimCLR's two projections; DINO's student crops (global first) and
    the teacher's global crops."""
    if method == "simclr":
        return model(views[0]), model(views[1])
    return [model(v) for v in views], [model.forward_teacher(v) for v in views[:2]]


def train(folder: str | Path, method: str, epochs: int, *, size: int = 64, batch: int = 8, workers: int = 0,
          seed: int = 0):
    """lightly's loop; returns each step's loss."""
    torch.manual_seed(seed)
    model, transform, criterion = setup(method, size)
    loader = DataLoader(DicomViews(folder, transform), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06) if method == "simclr" else \
        torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for epoch in range(epochs):
        for views in loader:
            if method == "dino":
                momentum = cosine_schedule(epoch, epochs, 0.996, 1)
                update_momentum(model.student_backbone, model.teacher_backbone, m=momentum)
                update_momentum(model.student_head, model.teacher_head, m=momentum)
            loss = criterion(*embeddings(method, model, views))
            loss.backward()
            if method == "dino":
                model.student_head.cancel_last_layer_gradients(current_epoch=epoch)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="DICOM files (`cxrfast phantoms FOLDER --rows 128` writes some)")
    parser.add_argument("--method", choices=("simclr", "dino"), default="simclr")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    losses = train(args.folder, args.method, args.epochs, workers=args.workers)
    print(f"{args.method} loss per step:", " ".join(f"{loss:.3f}" for loss in losses))


if __name__ == "__main__":
    main()
