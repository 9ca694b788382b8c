"""`cxrfast demo`: the main job end to end on generated data, on a CPU in a few minutes.

Writes a labelled synthetic phantom archive as DICOM, prepares the cache, pretrains SparK on it,
and compares the linear probe of the pretrained encoder with that of a randomly initialised one
on the same labelled images and split. Every stage resumes: run it again to continue.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.prepare import prepare_cache
from cxrfast.train.linear_probe import ProbeSet, linear_probe
from cxrfast.models import create_backbone
from cxrfast.train.checkpoint import latest_checkpoint
from cxrfast.train.config import load_config
from cxrfast.train.pretrain import pretrain


def run_demo(out: str | Path, *, images: int = 2000, size: int = 128, epochs: int = 6, backbone: str = "resnet18",
             workers: int = 2, seed: int = 0) -> dict:
    out, console = Path(out), Console()
    console.rule("1. a synthetic archive (DICOM, labelled findings)")
    labels = write_phantom_archive(out / "phantoms", images, rows=2 * size, seed=seed)
    console.rule("2. the prepared cache")
    report = prepare_cache(labels, out / "cache", size=size, workers=workers)
    console.print(f"{report.images} images in {report.root}")

    console.rule("3. SparK pretraining")
    run = out / "run"
    config = load_config(None, (), method="spark", data=str(out / "cache"), backbone=backbone, out=str(run),
                         image_size=size, epochs=epochs, batch_size=32, workers=workers, seed=seed, lr=2e-3,
                         warmup_epochs=1, checkpoint_every=50, log_every=1,
                         method_options={"decoder_width": 256})
    result = pretrain(config, resume=latest_checkpoint(run) is not None)

    console.rule("4. the linear probe: pretrained against random initialisation")
    probe = ProbeSet.read(out / "cache")
    torch.manual_seed(seed)
    random_init = linear_probe(create_backbone(backbone), probe, size, seed=seed)
    pretrained = linear_probe(_load_encoder(backbone, result.encoder), probe, size, seed=seed)
    epoch_loss, rate = _epoch_summary(run / "metrics.csv")
    table = Table(title=f"SparK {backbone}, {images} phantoms at {size}², {epochs} epochs on this machine")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("loss, first epoch → last", f"{epoch_loss[0]:.4f} → {epoch_loss[-1]:.4f}")
    table.add_row("throughput", f"{rate:.1f} images/s")
    for finding in probe.findings:
        table.add_row(f"AUROC {finding}: random → pretrained",
                      f"{_auroc(random_init.auroc[finding])} → {_auroc(pretrained.auroc[finding])}")
    table.add_row("mean AUROC: random → pretrained", f"{random_init.mean:.3f} → {pretrained.mean:.3f}")
    console.print(table)
    return {"epoch_loss": epoch_loss, "images_per_s": rate, "random": random_init, "pretrained": pretrained}


def _load_encoder(backbone: str, path: Path) -> torch.nn.Module:
    from safetensors.torch import load_file

    model = create_backbone(backbone)
    model.load_state_dict(load_file(path))
    return model


def _epoch_summary(metrics: Path) -> tuple[list[float], float]:
    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = sorted({int(r["epoch"]) for r in rows})
    losses = [float(np.mean([float(r["loss"]) for r in rows if int(r["epoch"]) == e])) for e in epochs]
    rates = [float(r["images_per_s"]) for r in rows if int(r["epoch"]) == epochs[-1]]
    return losses, rates[-1]


def _auroc(value: float) -> str:
    """A finding without both classes among the probe's images has no AUROC (NaN)."""
    return "undefined" if math.isnan(value) else f"{value:.3f}"

