"""Fine-tuning a classifier: the objective the training loop trains for `--task classification`.

`Classification.for_backbone` trains the timm backbone itself with its own classifier reset to
the findings (`reset_classifier`), so the state dict it exports is timm's layout and loads with
`timm.create_model(name, in_chans=1, num_classes=F, checkpoint_path=...)`. In linear mode the
model is that classifier alone, trained on features computed once (`linear_features`).
Multi-label findings train with `findings_bce` (U-Ignore through the batch's `known`, vit-med's
`pos_weight` if given); single-label tasks (one class per image: COVID / pneumonia / normal)
with softmax cross-entropy on the one-hot targets' class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrfast.data.batch import Batch
from cxrfast.losses import findings_bce
from cxrfast.methods import Objective


class Classification(Objective):
    """`model` maps a batch's views[0] to (B, F) logits, one per finding (or class)."""

    def __init__(self, model: nn.Module, findings: Sequence[str], *, multi_label: bool = True,
                 pos_weight: Tensor | None = None):
        super().__init__()
        self.findings = tuple(findings)
        if not self.findings:
            raise ValueError("a classifier needs at least one finding (or class)")
        if not multi_label and len(self.findings) < 2:
            raise ValueError(f"a single-label task needs two classes or more, not {list(self.findings)}")
        if pos_weight is not None and (not multi_label or pos_weight.shape != (len(self.findings),)):
            raise ValueError(f"pos_weight must be ({len(self.findings)},) for a multi-label task, not "
                             f"{tuple(pos_weight.shape)}" + ("" if multi_label else " for a single-label one"))
        self.model, self.multi_label = model, multi_label
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.float())

    @classmethod
    def for_backbone(cls, backbone: nn.Module, findings: Sequence[str], **options) -> Classification:
        """The timm backbone, its classifier reset to one output per finding, as the model."""
        backbone.reset_classifier(len(findings))
        return cls(backbone, findings, **options)

    def logits(self, images: Tensor) -> Tensor:
        """(B, 1, H, W) images (or (B, D) features in linear mode) -> (B, F)."""
        return self.model(images)

    def probabilities(self, images: Tensor) -> Tensor:
        """σ of each finding's logit (multi-label), or the softmax over the classes."""
        logits = self.logits(images).float()
        return torch.sigmoid(logits) if self.multi_label else logits.softmax(1)

    def training_step(self, batch: Batch) -> Tensor:
        if batch.targets is None or batch.known is None:
            raise ValueError("a classification batch needs targets and known (LabelledViews gives both)")
        logits = self.logits(batch.views[0])
        if self.multi_label:
            return findings_bce(logits, batch.targets, batch.known, self.pos_weight)
        return F.cross_entropy(logits.float(), batch.targets.argmax(1))
