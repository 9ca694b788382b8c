"""Linear evaluation, 100 epochs of a classifier on a frozen ResNet-18 (128², 64 phantoms with
Cardiomegaly common, 70/30 patient split, batch 16): cxrfast's linear mode (features of the
centred views computed once, then the classifier alone trained by the TrainingLoop, checkpoints
and metrics included) against solo-learn's way (the frozen backbone run on every batch of every
epoch, a plain torch loop). Both classifiers start from the same weights and see the same
batches in the same order with the same optimiser (AdamW, betas 0.9/0.95, constant learning
rate), so they should end with the same test AUROC; each run prints it, and the speed is only
worth having at the same AUROC. Figures are per training image-epoch; one round each (the
baseline's takes minutes).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from cxrfast.data.batch import collate
from cxrfast.data.datasets import ImageFiles, LabelledViews
from cxrfast.data.labels import LabelTable, split_by_patient
from cxrfast.data.loader import EpochLoader
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.synthetic import FINDINGS, Finding, Findings
from cxrfast.losses import findings_bce
from cxrfast.models import create_backbone
from cxrfast.train import TrainConfig, TrainingLoop
from cxrfast.train.classification import Classification
from cxrfast.train.features import encode
from cxrfast.train.linear_features import FeatureRows, classifier_for

IMAGES, SIZE, BATCH, EPOCHS, LR = 64, 128, 16, 100, 0.05
AUROC: dict[str, float] = {}


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune")
    write_phantom_archive(out, IMAGES, rows=SIZE, findings=Findings(dict.fromkeys(FINDINGS, Finding(0.5))),
                          progress=False)
    table = LabelTable.read_manifest(out / "labels.csv", ["Cardiomegaly"])
    targets, known = table.targets("ignore")
    parts = split_by_patient(table, {"train": 0.7, "test": 0.3}, seed=0)
    images = ImageFiles(out / "labels.csv")
    torch.manual_seed(0)
    backbone = create_backbone("resnet18").eval()
    head = classifier_for(backbone, 1)
    train, test = (LabelledViews(images, targets, known, parts[p], size=SIZE) for p in ("train", "test"))
    return backbone, head, train, test


def _auroc(scores: torch.Tensor, views: LabelledViews) -> float:
    return float(roc_auc_score(views.targets[views.rows, 0].numpy(), scores[:, 0].numpy()))


def _cxrfast(backbone, head, train, test, out: Path) -> float:
    task = Classification(copy.deepcopy(head), ("Cardiomegaly",))
    rows = FeatureRows(encode(backbone, train, batch_size=BATCH), train)
    config = TrainConfig(out=str(out), epochs=EPOCHS, batch_size=BATCH, optimizer="adamw", lr=LR * 256 / BATCH,
                         warmup_epochs=0, min_lr=LR, weight_decay=0.0, weight_decay_end=0.0,
                         workers=0, checkpoint_every=10**6, log_every=10**6)
    TrainingLoop(config, task, EpochLoader(rows, BATCH, workers=0), run=out, device=torch.device("cpu"),
                 progress=False).run()
    with torch.no_grad():
        return _auroc(task.logits(encode(backbone, test)), test)


def _solo_learn(backbone, head, train, test) -> float:
    head = copy.deepcopy(head)
    optimizer = torch.optim.AdamW(head.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.0)
    loader = EpochLoader(train, BATCH, workers=0)  # the order the cxrfast run's feature rows come in
    for _ in range(EPOCHS):
        for batch in loader:
            with torch.no_grad():
                features = backbone(batch.views[0])
            loss = findings_bce(head(features), batch.targets, batch.known)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        scores = torch.cat([head(backbone(b.views[0])) for b in DataLoader(test, batch_size=BATCH, collate_fn=collate)])
    return _auroc(scores, test)


@pytest.mark.parametrize("role,label", [("cxrfast", "cxrfast linear mode: features once"),
                                        ("baseline", "solo-learn's way: frozen backbone every batch")])
def test_linear_evaluation(benchmark, tag, setting, tmp_path, role, label):
    backbone, head, train, test = setting
    benchmark.group = f"linear evaluation, ResNet-18 {SIZE}², {EPOCHS} epochs, {len(train)} training images"
    tag(role, EPOCHS * (len(train) // BATCH) * BATCH, label)
    rounds = iter(range(10**6))
    run = (lambda: _cxrfast(backbone, head, train, test, tmp_path / f"run-{next(rounds)}")) if role == "cxrfast" \
        else (lambda: _solo_learn(backbone, head, train, test))
    AUROC[label] = benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
    print(f"\n{label}: test AUROC (Cardiomegaly) {AUROC[label]:.4f}")


# A full fine-tuning step: cxrfast's TrainingLoop on LabelledViews (fine-tuning's augmentation)
# against a plain timm + torch loop as a user writes it (torchvision's v2 transforms per sample in
# a Dataset, DataLoader, AdamW, BCE-with-logits), both reading the same prepared cache with the
# same loader workers, each for STEPS optimiser steps of batch 32 at 224² from scratch (the
# loaders' start and cxrfast's end-of-epoch checkpoint included). Figures are per image.
STEP_IMAGES, STEP_SIZE, STEP_BATCH, STEPS, STEP_WORKERS = 160, 224, 32, 4, 2
STEP_FINDINGS = ("Cardiomegaly", "Pleural Effusion")


@pytest.fixture(scope="module")
def step_cache(tmp_path_factory):
    from cxrfast.data.prepare import prepare_cache

    out = tmp_path_factory.mktemp("finetune-step")
    labels = write_phantom_archive(out / "phantoms", STEP_IMAGES, rows=256, progress=False,
                                   findings=Findings(dict.fromkeys(STEP_FINDINGS, Finding(0.4))))
    return prepare_cache(labels, out / "cache", size=256, workers=STEP_WORKERS, progress=False).root


class _UserDataset(torch.utils.data.Dataset):
    """What a user writes: each cached image through torchvision's v2 transforms, with its labels."""

    def __init__(self, images, targets):
        from torchvision.transforms import v2

        self.images, self.targets = images, targets
        self.transform = v2.Compose([v2.RandomResizedCrop(STEP_SIZE, scale=(0.8, 1.0), antialias=True),
                                     v2.RandomRotation(7)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(self.images[index]), self.targets[index]


def _plain_timm_steps(arch: str, cache: Path) -> None:
    from cxrfast.data.prepared_cache import PreparedCache
    from cxrfast.models import import_timm

    timm = import_timm()  # torchvision's Python layer beside this torch (see cxrfast.models.timm_import)
    table = LabelTable.read_manifest(cache / "manifest.csv", list(STEP_FINDINGS), path_column="name")
    targets = torch.from_numpy(table.targets("ignore")[0])
    torch.manual_seed(0)
    model = timm.create_model(arch, in_chans=1, num_classes=len(STEP_FINDINGS), **_size_options(arch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    criterion = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(_UserDataset(PreparedCache(cache), targets), batch_size=STEP_BATCH, shuffle=True,
                        num_workers=STEP_WORKERS, drop_last=True)
    model.train()
    for step, (images, labels) in enumerate(loader):
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step + 1 == STEPS:
            break


def _size_options(arch: str) -> dict:
    return {"img_size": STEP_SIZE} if arch.startswith("vit") else {}


def _cxrfast_steps(arch: str, cache: Path, out: Path) -> None:
    from cxrfast.data.augment import ViewAugment
    from cxrfast.data.prepared_cache import PreparedCache
    from cxrfast.train.finetune import FINETUNE_AUGMENT

    table = LabelTable.read_manifest(cache / "manifest.csv", list(STEP_FINDINGS), path_column="name")
    targets, known = table.targets("ignore")
    torch.manual_seed(0)
    task = Classification.for_backbone(create_backbone(arch, image_size=STEP_SIZE), STEP_FINDINGS)
    augment = ViewAugment(size=STEP_SIZE, **FINETUNE_AUGMENT)
    views = LabelledViews(PreparedCache(cache), targets, known, range(STEPS * STEP_BATCH), augment=augment)
    config = TrainConfig(out=str(out), epochs=1, batch_size=STEP_BATCH, optimizer="adamw", lr=1e-4 * 256 / STEP_BATCH,
                         warmup_epochs=0, weight_decay=0.05, weight_decay_end=0.05, workers=STEP_WORKERS,
                         checkpoint_every=10**6, log_every=10**6, keep_checkpoints=1)
    TrainingLoop(config, task, EpochLoader(views, STEP_BATCH, workers=STEP_WORKERS), run=out,
                 device=torch.device("cpu"), progress=False).run()


@pytest.mark.parametrize("arch", ["resnet50", "vit_small_patch16_224"])
@pytest.mark.parametrize("role,label", [("cxrfast", "cxrfast TrainingLoop"),
                                        ("baseline", "plain timm + torch loop")])
def test_full_finetuning_step(benchmark, tag, step_cache, tmp_path, arch, role, label):
    benchmark.group = f"full fine-tuning, {arch} {STEP_SIZE}², batch {STEP_BATCH}, {STEPS} steps"
    tag(role, STEPS * STEP_BATCH, label)
    run = (lambda: _cxrfast_steps(arch, step_cache, tmp_path / "run")) if role == "cxrfast" \
        else (lambda: _plain_timm_steps(arch, step_cache))
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)


# A segmentation step: cxrfast's UNet over a timm ResNet-50 through the TrainingLoop against
# segmentation_models_pytorch's Unet on the same timm encoder ("tu-resnet50", the same decoder
# widths) in a plain loop with smp's own DiceLoss + BCE; both take the same batches (MaskedViews
# of phantoms with their lung masks, fine-tuning's augmentation) from the same loader.
SEG_IMAGES, SEG_SIZE, SEG_BATCH, SEG_STEPS = 32, 256, 8, 4


@pytest.fixture(scope="module")
def seg_views(tmp_path_factory):
    from cxrfast.data.augment import ViewAugment
    from cxrfast.data.datasets import MaskedViews
    from cxrfast.data.masks import MaskFiles
    from cxrfast.train.finetune import FINETUNE_AUGMENT

    labels = write_phantom_archive(tmp_path_factory.mktemp("segmentation"), SEG_IMAGES, rows=SEG_SIZE,
                                   lung_masks=True, progress=False)
    table = LabelTable.read_manifest(labels, [])
    masks = MaskFiles.from_manifest(labels, "lung_mask", [(SEG_SIZE, SEG_SIZE)] * SEG_IMAGES, table.paths)
    return MaskedViews(ImageFiles(labels), masks, range(SEG_IMAGES),
                       augment=ViewAugment(size=SEG_SIZE, **FINETUNE_AUGMENT))


def _cxrfast_segmentation(views, out: Path) -> None:
    from cxrfast.train.segmentation import Segmentation

    torch.manual_seed(0)
    task = Segmentation.for_backbone(create_backbone("resnet50"))
    config = TrainConfig(out=str(out), epochs=1, batch_size=SEG_BATCH, optimizer="adamw", lr=1e-3 * 256 / SEG_BATCH,
                         warmup_epochs=0, weight_decay=0.05, weight_decay_end=0.05, workers=0,
                         checkpoint_every=10**6, log_every=10**6, keep_checkpoints=1)
    TrainingLoop(config, task, EpochLoader(views, SEG_BATCH, workers=0), run=out, device=torch.device("cpu"),
                 progress=False).run()


def _smp_segmentation(views) -> None:
    from cxrfast.models import import_timm

    import_timm()  # smp imports torchvision: its Python layer needs the shim beside this torch
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.Unet("tu-resnet50", encoder_weights=None, in_channels=1, classes=1)
    dice = smp.losses.DiceLoss("binary", from_logits=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    model.train()
    for batch in EpochLoader(views, SEG_BATCH, workers=0):
        logits = model(batch.views[0])
        loss = dice(logits, batch.masks) + torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("role,label", [("cxrfast", "cxrfast UNet + TrainingLoop"),
                                        ("baseline", "segmentation_models_pytorch Unet, plain loop")])
def test_segmentation_step(benchmark, tag, seg_views, tmp_path, role, label):
    benchmark.group = f"segmentation fine-tuning, UNet on ResNet-50, {SEG_SIZE}², batch {SEG_BATCH}, {SEG_STEPS} steps"
    tag(role, SEG_STEPS * SEG_BATCH, label)
    run = (lambda: _cxrfast_segmentation(seg_views, tmp_path / "run")) if role == "cxrfast" \
        else (lambda: _smp_segmentation(seg_views))
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
