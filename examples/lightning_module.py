"""A cxrfast method trained by Lightning: the `LightningModule` holds the method, whose
`training_step(batch)` returns its loss, and Lightning's `Trainer` runs the loop on cxrfast's
loader (the method's own views of each image, by `SSLViews` and `EpochLoader`).

What stays cxrfast's: the method's loss and views. What becomes Lightning's: the loop, the
optimiser step, devices, precision and logging. cxrfast's own trainer (`cxrfast pretrain`) adds
the recipes' schedules (learning rate, weight decay, a method's momentum or temperature through
`Method.schedule`), exact resume and the linear probe; a Lightning user sets those up themselves.

    python examples/lightning_module.py DICOM_FOLDER --steps 50
"""

from __future__ import annotations

import argparse

import cxrfast  # noqa: F401  (first: then Lightning's torchvision import works beside a CPU torch)
import lightning as L
import torch

from cxrfast.data.datasets import ImageFiles, SSLViews
from cxrfast.data.loader import EpochLoader
from cxrfast.methods import create_method, method_class
from cxrfast.models import create_backbone


class Pretraining(L.LightningModule):
    def __init__(self, method: str = "spark", backbone: str = "resnet18", image_size: int = 64, lr: float = 1e-3):
        super().__init__()
        self.method = create_method(method, create_backbone(backbone), image_size)
        self.lr, self.losses = lr, []

    def training_step(self, batch, batch_index):
        loss = self.method.training_step(batch)
        self.log("loss", loss, prog_bar=True)
        self.losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.method.parameters(), lr=self.lr, weight_decay=0.05)


def loader(folder, method: str = "spark", image_size: int = 64, batch_size: int = 8, workers: int = 0):
    """cxrfast's loader of `method`'s views of the images under `folder`."""
    crops = method_class(method).crops(image_size, {}, {})
    return EpochLoader(SSLViews(ImageFiles(folder), crops), batch_size, workers=workers)


def train(folder, steps: int, *, method: str = "spark", seed: int = 0, **trainer_options) -> Pretraining:
    L.seed_everything(seed, verbose=False)
    module = Pretraining(method)
    trainer = L.Trainer(max_steps=steps, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, **trainer_options)
    trainer.fit(module, train_dataloaders=loader(folder, method))
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="DICOM files (`cxrfast phantoms FOLDER --rows 128` writes some)")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    module = train(args.folder, args.steps)
    print(f"SparK's loss {sum(module.losses[:5]) / 5:.3f} -> {sum(module.losses[-5:]) / 5:.3f}")


if __name__ == "__main__":
    main()
