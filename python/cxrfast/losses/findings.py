"""The fine-tuning loss of multi-label findings: binary cross-entropy over the labels that are
known, so that U-Ignore (an uncertain or blank label, `known` False) adds nothing to the loss or
its gradient, and the mean is over the labels that count rather than over every cell.

`pos_weight` is vit-med's per-finding weight, negatives / positives among the known training
labels: a rare finding's positives weigh as much, in all, as its negatives. Single-label tasks
(COVID / pneumonia / normal) use torch's softmax cross-entropy as it is.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from cxrfast.errors import DataError


def findings_bce(logits: Tensor, targets: Tensor, known: Tensor, pos_weight: Tensor | None = None) -> Tensor:
    """Mean binary cross-entropy with logits over the entries where `known` is True, each
    positive weighted by `pos_weight` (F,); 0 (with a zero gradient) when nothing is known."""
    if not logits.shape == targets.shape == known.shape or logits.ndim != 2:
        raise ValueError(f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and known "
                         f"{tuple(known.shape)} must all be (batch, findings)")
    per_label = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none",
                                                   pos_weight=pos_weight)
    counted = known.to(per_label.dtype)
    return (per_label * counted).sum() / counted.sum().clamp(min=1)


def positive_weights(targets: Tensor, known: Tensor, findings: list[str] | tuple[str, ...]) -> Tensor:
    """(F,) negatives / positives among the known labels of each finding (float32)."""
    known = known.bool()
    positives = ((targets > 0.5) & known).sum(0)
    negatives = ((targets <= 0.5) & known).sum(0)
    missing = [name for name, count in zip(findings, positives.tolist(), strict=True) if count == 0]
    if missing:
        raise DataError(f"no known positive of {', '.join(map(repr, missing))} among the training labels: "
                        f"pos_weight (negatives / positives) is undefined; label more images or leave them out")
    return negatives.float() / positives.float()
