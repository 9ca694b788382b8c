"""The suites `cxrfast bench` runs, each a module listing its cases for a scale and a device."""

from __future__ import annotations

import importlib

from cxrfast.bench.case import SCALES, Case
from cxrfast.errors import ConfigError

# suite: (module, what it compares), in the order `all` runs them
SUITES = {
    "dicom": ("cxrfast.bench.dicom", "DICOM decoding and display against pydicom; CT slices"),
    "loader": ("cxrfast.bench.loader", "two-view SSL batches against pydicom + torchvision in a DataLoader"),
    "sparse": ("cxrfast.bench.sparse", "the sparse encoder against SparK's dense-masked one"),
    "losses": ("cxrfast.bench.losses", "fused contrastive, DINO and SwAV losses against the naive ones"),
    "pretrain": ("cxrfast.bench.pretrain", "pretraining steps of each method"),
    "finetune": ("cxrfast.bench.finetune",
                 "linear evaluation against solo-learn's loop; full and segmentation fine-tuning steps"),
    "eval": ("cxrfast.bench.eval", "DeLong and the paired bootstrap against their definitions"),
}


def suite_cases(suite: str, scale: str, device: str) -> list[Case]:
    if suite not in SUITES:
        raise ConfigError(f"no benchmark suite {suite!r}: choose from {', '.join(SUITES)}")
    if scale not in SCALES:
        raise ConfigError(f"no benchmark scale {scale!r}: choose from {', '.join(SCALES)}")
    return importlib.import_module(SUITES[suite][0]).cases(scale, device)
