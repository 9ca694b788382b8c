"""Fine-tuning, same run, one round each (the baselines' take minutes at full size); at full size:

- Linear evaluation: a classifier trained for 100 epochs on a frozen random ResNet-18 (128², 64
  phantoms with Cardiomegaly common, a 70/30 patient split, batch 16). cxrfast's linear mode
  computes the features of the centred views once, then trains the classifier alone through the
  TrainingLoop (checkpoints and metrics included); solo-learn's way runs the frozen backbone on
  every batch of every epoch, in a plain torch loop. Both classifiers start from the same
  weights and see the same batches in the same order with the same optimiser (AdamW, betas
  0.9/0.95, constant learning rate), so they must end with the same test AUROC, and the speed is
  only worth having at the same AUROC: known only once trained, it is checked after each round
  against every contender's before it. Figures are per training image-epoch.
- A full fine-tuning step: cxrfast's TrainingLoop on LabelledViews (fine-tuning's augmentation)
  against a plain timm + torch loop as a user writes it (torchvision's v2 transforms per sample
  in a Dataset, DataLoader, AdamW, BCE-with-logits), both reading the same prepared cache with
  the same 2 loader workers, each for 4 optimiser steps of batch 32 at 224² from scratch (the
  loaders' start and cxrfast's end-of-epoch checkpoint included), of ResNet-50 and of ViT-S/16.
- A segmentation step: cxrfast's UNet over a timm ResNet-50 through the TrainingLoop against
  segmentation_models_pytorch's Unet on the same timm encoder ("tu-resnet50", the same decoder
  widths) in a plain loop with smp's own DiceLoss + BCE; both take the same batches (32
  phantoms at 256² with their lung masks, fine-tuning's augmentation, batch 8) from the same
  loader.

The smaller scales shrink the images, batches, steps and models. Fine-tuning has no fused GPU op
of its own, so a GPU run adds no Triton or CUDA contender."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cxrfast.bench.case import Case, Step, Workspace
from cxrfast.data.augment import ViewAugment
from cxrfast.data.batch import collate
from cxrfast.data.datasets import ImageFiles, LabelledViews, MaskedViews
from cxrfast.data.labels import LabelTable, split_by_patient
from cxrfast.data.loader import EpochLoader
from cxrfast.data.masks import MaskFiles
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.prepared_cache import PreparedCache
from cxrfast.data.synthetic import FINDINGS, Finding, Findings
from cxrfast.errors import CxrfastError
from cxrfast.losses import findings_bce
from cxrfast.models import create_backbone, import_timm
from cxrfast.train import TrainConfig, TrainingLoop
from cxrfast.train.classification import Classification
from cxrfast.train.features import encode
from cxrfast.train.finetune import FINETUNE_AUGMENT
from cxrfast.train.linear_features import FeatureRows, classifier_for
from cxrfast.train.segmentation import Segmentation

SUITE = "finetune"
QUIET = {"checkpoint_every": 10**6, "log_every": 10**6}  # only the end-of-run checkpoint is written

# Linear evaluation: phantoms, size, batch, epochs (a frozen ResNet-18 at every scale)
LINEAR = {"full": (64, 128, 16, 100), "quick": (32, 64, 8, 60), "tiny": (16, 64, 4, 3)}
LINEAR_LR, TRAIN_SHARE = 0.05, 0.7
# Full fine-tuning: phantoms, cache size, crop size, batch, steps, loader workers, architectures
FULL = {"full": (160, 256, 224, 32, 4, 2, ("resnet50", "vit_small_patch16_224")),
        "quick": (16, 96, 96, 8, 2, 2, ("resnet50", "vit_small_patch16_224")),
        "tiny": (4, 64, 64, 2, 2, 0, ("resnet18", "vit_tiny_patch16_224"))}
FULL_FINDINGS = ("Cardiomegaly", "Pleural Effusion")
# Segmentation: phantoms (one epoch of them), size, batch, encoder
SEGMENTATION = {"full": (32, 256, 8, "resnet50"), "quick": (8, 128, 4, "resnet50"), "tiny": (4, 64, 2, "resnet18")}


def _run_dirs(workspace: Workspace, name: str):
    """A fresh run directory for each round, as a new run starts in one."""
    return (workspace.root / f"{name}-{n}" for n in itertools.count())


def _config(out: Path, epochs: int, batch: int, lr: float, workers: int, **options) -> TrainConfig:
    """AdamW at `lr` (TrainConfig takes it per 256 images), in fp32 as the plain loops run (on a GPU
    too, where the loop's default would be autocast)."""
    return TrainConfig(out=str(out), epochs=epochs, batch_size=batch, optimizer="adamw", lr=lr * 256 / batch,
                       warmup_epochs=0, workers=workers, precision="off", **QUIET, **options)


# Linear evaluation


def _training_images(images: int) -> int:
    """The training split's images: one patient per phantom, the share rounded as the split rounds it."""
    return int(TRAIN_SHARE * images + 0.5)


def _linear_setting(workspace: Workspace, images: int, size: int):
    out = workspace.directory(f"linear-{images}-{size}")
    write_phantom_archive(out, images, rows=size, findings=Findings(dict.fromkeys(FINDINGS, Finding(0.5))),
                          progress=False)
    table = LabelTable.read_manifest(out / "labels.csv", ["Cardiomegaly"])
    targets, known = table.targets("ignore")
    parts = split_by_patient(table, {"train": TRAIN_SHARE, "test": 1 - TRAIN_SHARE}, seed=0)
    files = ImageFiles(out / "labels.csv")
    train, test = (LabelledViews(files, targets, known, parts[p], size=size) for p in ("train", "test"))
    if len(train) != _training_images(images):
        raise CxrfastError(f"the split gave {len(train)} training images, not the {_training_images(images)} "
                           "the figures are per")
    torch.manual_seed(0)
    backbone = create_backbone("resnet18").eval().to(workspace.device)
    return backbone, classifier_for(backbone, 1), train, test


def _auroc(logits: torch.Tensor, views: LabelledViews) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(views.targets[views.rows, 0].numpy(), logits[:, 0].cpu().numpy()))


def _linear_mode(backbone, head, train, test, batch: int, epochs: int, out: Path, device: str) -> float:
    task = Classification(copy.deepcopy(head), ("Cardiomegaly",))
    rows = FeatureRows(encode(backbone, train, batch_size=batch, device=device), train)
    config = _config(out, epochs, batch, LINEAR_LR, 0, min_lr=LINEAR_LR, weight_decay=0.0, weight_decay_end=0.0)
    TrainingLoop(config, task, EpochLoader(rows, batch, workers=0), run=out, device=torch.device(device),
                 progress=False).run()
    with torch.no_grad():
        return _auroc(task.logits(encode(backbone, test, device=device).to(device)), test)


def _solo_learn(backbone, head, train, test, batch_size: int, epochs: int, device: str) -> float:
    head = copy.deepcopy(head).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=LINEAR_LR, betas=(0.9, 0.95), weight_decay=0.0)
    loader = EpochLoader(train, batch_size, workers=0)  # the order linear mode's feature rows come in
    for _ in range(epochs):
        for batch in loader:
            batch = batch.to(device)
            with torch.no_grad():
                features = backbone(batch.views[0])
            loss = findings_bce(head(features), batch.targets, batch.known)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        logits = torch.cat([head(backbone(b.views[0].to(device)))
                            for b in DataLoader(test, batch_size=batch_size, collate_fn=collate)])
    return _auroc(logits, test)


def _linear(sizes: tuple[int, int, int, int], role: str):
    images, size, batch, epochs = sizes

    def make(workspace: Workspace) -> Step:
        backbone, head, train, test = workspace.shared(("linear", images, size),
                                                       lambda: _linear_setting(workspace, images, size))
        device, runs = workspace.device, _run_dirs(workspace, f"linear-{role}")
        train_once = {"cxrfast": lambda: _linear_mode(backbone, head, train, test, batch, epochs, next(runs), device),
                      "baseline": lambda: _solo_learn(backbone, head, train, test, batch, epochs, device)}[role]
        aurocs = workspace.shared(("linear AUROC", sizes), dict)  # contender: its test AUROC

        def run() -> None:  # the AUROC is known only once trained: checked after each round
            auroc = train_once()
            for other, theirs in aurocs.items():
                if auroc != theirs:
                    raise AssertionError(f"test AUROC {auroc:.6f} ({role}) against {theirs:.6f} ({other})")
            aurocs[role] = auroc

        return Step(run)

    return make


# Full fine-tuning


def _prepared_cache(workspace: Workspace, images: int, cache_size: int, workers: int) -> Path:
    out = workspace.directory(f"full-{images}-{cache_size}")
    labels = write_phantom_archive(out / "phantoms", images, rows=cache_size, progress=False,
                                   findings=Findings(dict.fromkeys(FULL_FINDINGS, Finding(0.4))))
    return prepare_cache(labels, out / "cache", size=cache_size, workers=workers, progress=False).root


class _UserDataset(Dataset):
    """What a user writes: each cached image through torchvision's v2 transforms, with its labels."""

    def __init__(self, images, targets, size: int):
        from torchvision.transforms import v2

        self.images, self.targets = images, targets
        self.transform = v2.Compose([v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True),
                                     v2.RandomRotation(7)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(self.images[index]), self.targets[index]


def _plain_timm(arch: str, cache: Path, size: int, batch: int, steps: int, workers: int, device: str) -> None:
    timm = import_timm()  # torchvision's Python layer beside this torch (see cxrfast.models.timm_import)
    table = LabelTable.read_manifest(cache / "manifest.csv", list(FULL_FINDINGS), path_column="name")
    targets = torch.from_numpy(table.targets("ignore")[0])
    torch.manual_seed(0)
    options = {"img_size": size} if arch.startswith("vit") else {}
    model = timm.create_model(arch, in_chans=1, num_classes=len(FULL_FINDINGS), **options).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    criterion = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(_UserDataset(PreparedCache(cache), targets, size), batch_size=batch, shuffle=True,
                        num_workers=workers, drop_last=True)
    model.train()
    for images, labels in itertools.islice(loader, steps):
        loss = criterion(model(images.to(device)), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _training_loop(arch: str, cache: Path, size: int, batch: int, steps: int, workers: int, out: Path,
                   device: str) -> None:
    table = LabelTable.read_manifest(cache / "manifest.csv", list(FULL_FINDINGS), path_column="name")
    targets, known = table.targets("ignore")
    torch.manual_seed(0)
    task = Classification.for_backbone(create_backbone(arch, image_size=size), FULL_FINDINGS)
    views = LabelledViews(PreparedCache(cache), targets, known, range(steps * batch),
                          augment=ViewAugment(size=size, **FINETUNE_AUGMENT))
    config = _config(out, 1, batch, 1e-4, workers, weight_decay=0.05, weight_decay_end=0.05, keep_checkpoints=1)
    TrainingLoop(config, task, EpochLoader(views, batch, workers=workers), run=out, device=torch.device(device),
                 progress=False).run()


def _full(sizes: tuple, arch: str, role: str):
    images, cache_size, size, batch, steps, workers, _ = sizes

    def make(workspace: Workspace) -> Step:
        cache = workspace.shared(("cache", images, cache_size),
                                 lambda: _prepared_cache(workspace, images, cache_size, workers))
        device, runs = workspace.device, _run_dirs(workspace, f"full-{arch}")
        if role == "cxrfast":
            return Step(lambda: _training_loop(arch, cache, size, batch, steps, workers, next(runs), device))
        return Step(lambda: _plain_timm(arch, cache, size, batch, steps, workers, device))

    return make


# Segmentation


def _masked_views(workspace: Workspace, images: int, size: int):
    labels = write_phantom_archive(workspace.directory(f"segmentation-{images}-{size}"), images, rows=size,
                                   lung_masks=True, progress=False)
    table = LabelTable.read_manifest(labels, [])
    masks = MaskFiles.from_manifest(labels, "lung_mask", [(size, size)] * images, table.paths)
    return MaskedViews(ImageFiles(labels), masks, range(images), augment=ViewAugment(size=size, **FINETUNE_AUGMENT))


def _unet_loop(views, encoder: str, batch: int, out: Path, device: str) -> None:
    torch.manual_seed(0)
    task = Segmentation.for_backbone(create_backbone(encoder))
    config = _config(out, 1, batch, 1e-3, 0, weight_decay=0.05, weight_decay_end=0.05, keep_checkpoints=1)
    TrainingLoop(config, task, EpochLoader(views, batch, workers=0), run=out, device=torch.device(device),
                 progress=False).run()


def _smp_loop(views, encoder: str, batch_size: int, device: str) -> None:
    import_timm()  # smp imports torchvision: its Python layer needs the shim beside this torch
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.Unet(f"tu-{encoder}", encoder_weights=None, in_channels=1, classes=1).to(device)
    dice = smp.losses.DiceLoss("binary", from_logits=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    model.train()
    for batch in EpochLoader(views, batch_size, workers=0):
        batch = batch.to(device)
        logits = model(batch.views[0])
        loss = dice(logits, batch.masks) + F.binary_cross_entropy_with_logits(logits, batch.masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _segmentation(sizes: tuple[int, int, int, str], role: str):
    images, size, batch, encoder = sizes

    def make(workspace: Workspace) -> Step:
        views = workspace.shared(("masked views", images, size), lambda: _masked_views(workspace, images, size))
        device, runs = workspace.device, _run_dirs(workspace, "segmentation")
        if role == "cxrfast":
            return Step(lambda: _unet_loop(views, encoder, batch, next(runs), device))
        return Step(lambda: _smp_loop(views, encoder, batch, device))

    return make


def cases(scale: str, device: str) -> list[Case]:
    found = []
    sizes = LINEAR[scale]
    images, size, batch, epochs = sizes
    trained = epochs * (_training_images(images) // batch) * batch  # whole batches only
    group = f"linear evaluation, ResNet-18 {size}², {epochs} epochs, {_training_images(images)} training images"
    for role, label in (("cxrfast", "cxrfast linear mode: features once"),
                        ("baseline", "solo-learn's way: frozen backbone every batch")):
        found.append(Case(SUITE, group, label, role, trained, _linear(sizes, role), rounds=1, warmup=0,
                          unit="training image-epoch"))
    sizes = FULL[scale]
    _, _, size, batch, steps, _, archs = sizes
    for arch in archs:
        group = f"full fine-tuning, {arch} {size}², batch {batch}, {steps} steps"
        for role, label in (("cxrfast", "cxrfast TrainingLoop"), ("baseline", "plain timm + torch loop")):
            found.append(Case(SUITE, group, label, role, steps * batch, _full(sizes, arch, role), rounds=1, warmup=0))
    sizes = SEGMENTATION[scale]
    images, size, batch, encoder = sizes
    group = (f"segmentation fine-tuning, UNet on {encoder.replace('resnet', 'ResNet-')}, {size}², batch {batch}, "
             f"{images // batch} steps")
    for role, label in (("cxrfast", "cxrfast UNet + TrainingLoop"),
                        ("baseline", "segmentation_models_pytorch Unet, plain loop")):
        found.append(Case(SUITE, group, label, role, images // batch * batch, _segmentation(sizes, role),
                          rounds=1, warmup=0))
    return found
