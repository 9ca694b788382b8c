"""A captioning run's reports for images, for a qualitative look at what the encoder learnt to see:
the run's `config.yaml`, `tokenizer.json` and newest checkpoint (the decoder lives only there;
`encoder.safetensors` is the backbone alone) rebuild the method, whose forward decoder writes a
report for the centred view of each image, greedily or by beam search. `captions.csv` holds each
image's name, the report written and, where the data has one, the image's own report beside it.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch

from cxrfast.atomic import write_text_atomically
from cxrfast.data.augment import resize_center
from cxrfast.data.caption_views import manifest_rows
from cxrfast.data.report_tokenizer import ReportTokenizer
from cxrfast.data.reports import REPORT_COLUMN
from cxrfast.errors import ConfigError
from cxrfast.methods.caption import TOKENIZER_FILE, Caption
from cxrfast.models import create_backbone
from cxrfast.train.checkpoint import latest_checkpoint, load_checkpoint
from cxrfast.train.config import PretrainConfig, load_config
from cxrfast.train.initial_weights import RUN_CONFIG
from cxrfast.train.loop import resolve_device
from cxrfast.train.pretrain import open_images


def caption_config(run: str | os.PathLike) -> PretrainConfig:
    run = Path(run)
    if not (run / RUN_CONFIG).is_file():
        raise ConfigError(f"{run}: no {RUN_CONFIG}; give a cxrfast pretrain run of method caption")
    config = load_config(run / RUN_CONFIG, kind=PretrainConfig)
    if config.method != "caption":
        raise ConfigError(f"{run}: a {config.method} run; only method caption writes reports")
    return config


def load_captioner(run: str | os.PathLike, in_chans: int = 1) -> Caption:
    """The captioning method of `run` as its newest checkpoint left it, in eval mode, on the CPU,
    for images of `in_chans` channels (those it was trained on)."""
    run, config = Path(run), caption_config(run)
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise ConfigError(f"{run}: no checkpoint yet; the decoder is saved only in the run's checkpoints")
    tokenizer = ReportTokenizer.load(run / TOKENIZER_FILE)
    backbone = create_backbone(config.backbone, image_size=config.image_size, in_chans=in_chans)
    method = Caption.build(backbone, config.image_size, {**config.method_options, "tokenizer": tokenizer})
    try:
        method.load_state_dict(load_checkpoint(checkpoint)["model"])
    except RuntimeError as e:  # the shapes torch names: another channel count, a changed checkpoint
        raise ConfigError(f"{checkpoint}: not a captioner for {in_chans}-channel images ({e})") from e
    return method.eval()


def captions_with_run(run: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *, beam: int = 1,
                      batch_size: int = 32, device: str = "auto") -> Path:
    """Write `out` (CSV: name, report, and the data's own report where it has one) with `run`'s
    report of every image of `data` (a folder, manifest or prepared cache)."""
    config = caption_config(run)
    images = open_images(data, config.display)  # through the windows the run was trained on
    target = resolve_device(device)
    method = load_captioner(run, images.channels).to(target)
    written = []
    for start in range(0, len(images), batch_size):
        views = torch.cat([resize_center(images[k][None], config.image_size)
                           for k in range(start, min(start + batch_size, len(images)))])
        written += method.caption(views.to(target), beam=beam)
    rows, names = manifest_rows(images)
    text = io.StringIO()
    csv.writer(text).writerows([["name", "report", "own_report"],
                                *((n, r, row.get(REPORT_COLUMN, "")) for n, r, row in zip(names, written, rows))])
    return write_text_atomically(out, text.getvalue())
