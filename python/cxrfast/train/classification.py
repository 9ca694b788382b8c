"""Fine-tuning a classifier: the objective the training loop trains for `--task classification`.

`Classification.for_backbone` trains the timm backbone itself with its own classifier reset to
the findings (`reset_classifier`), so the state dict it exports is timm's layout and loads with
`timm.create_model(name, in_chans=1, num_classes=F, checkpoint_path=...)`. In linear mode the
model is that classifier alone, trained on features computed once (`linear_features`).
Multi-label findings train with `findings_bce` (U-Ignore through the batch's `known`, vit-med's
`pos_weight` if given); single-label tasks (one class per image: COVID / pneumonia / normal)
with softmax cross-entropy on the one-hot targets' class.

Wolf et al.'s `frozen_then_full`: for the first `frozen_epochs` of `epochs` the backbone runs in
eval mode without gradients (its weights and batch-norm statistics do not move) and only the
classifier trains; from then on everything trains, the backbone at `backbone_lr_factor` times
the classifier's rate. The backbone is in the optimiser from the first step, in groups of its
own, so it really joins (their Lightning callback, handed an optimiser that already held the
backbone, added no group and set the whole model's rate instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cxrfast.data.batch import Batch, collate
from cxrfast.losses import findings_bce
from cxrfast.methods import Objective
from cxrfast.train.layer_decay import layer_decay_groups


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
        self.frozen_epochs, self.epochs, self.frozen = 0, 1, False
        self.backbone_lr_factor, self.layer_decay = 1.0, None

    @classmethod
    def for_backbone(cls, backbone: nn.Module, findings: Sequence[str], *, frozen_epochs: int = 0, epochs: int = 1,
                     backbone_lr_factor: float = 1.0, layer_decay: float | None = None,
                     **options) -> Classification:
        """The timm backbone, its classifier reset to one output per finding, as the model; the
        backbone frozen for the first `frozen_epochs` of `epochs`, trained at
        `backbone_lr_factor` of the rate (and, for a ViT, `layer_decay` per layer)."""
        backbone.reset_classifier(len(findings))
        objective = cls(backbone, findings, **options)
        objective.frozen_epochs, objective.epochs = frozen_epochs, epochs
        objective.backbone_lr_factor, objective.layer_decay = backbone_lr_factor, layer_decay
        if layer_decay is not None:
            layer_decay_groups(backbone, layer_decay)  # a ConfigError for a backbone that is not a ViT
        # Frozen steps leave the backbone out of the graph: DDP must not wait for its gradients.
        objective.ddp_unused_parameters = frozen_epochs > 0
        return objective

    def classifier(self) -> nn.Module:
        """The layer that maps pooled features to logits (the model itself in linear mode)."""
        return self.model.get_classifier() if hasattr(self.model, "get_classifier") else self.model

    def parameter_groups(self) -> list[dict]:
        """The classifier at the scheduled rate; the backbone at `backbone_lr_factor` of it, per
        ViT layer with layer decay (MAE's convention, the classifier being the top layer)."""
        head = list(self.classifier().parameters())
        if self.classifier() is self.model:
            return [{"params": head}]
        ids = {id(p) for p in head}
        backbone = [p for p in self.model.parameters() if id(p) not in ids]
        groups = [{"params": backbone, "lr_factor": 1.0}] if self.layer_decay is None else \
            layer_decay_groups(self.model, self.layer_decay, set(backbone))
        for group in groups:
            group["lr_factor"] *= self.backbone_lr_factor
        return [{"params": head, "lr_factor": 1.0}, *groups]

    def schedule(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        # Step s falls in the first k of E epochs iff s·E < k·total (total = E · steps per epoch).
        self.frozen = step * self.epochs < self.frozen_epochs * total_steps
        if self.frozen:
            self.model.eval()  # its batch-norm statistics stay as they are
        elif self.training:
            self.model.train()

    def logits(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images (or (B, D) features in linear mode) -> (B, F)."""
        if not (self.frozen and self.training):
            return self.model(images)
        with torch.no_grad():
            pooled = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        return self.classifier()(pooled)

    def scores(self, logits: Tensor) -> Tensor:
        """σ of each finding's logit (multi-label), or the softmax over the classes."""
        logits = logits.float()
        return torch.sigmoid(logits) if self.multi_label else logits.softmax(1)

    def probabilities(self, images: Tensor) -> Tensor:
        return self.scores(self.logits(images))

    def loss(self, logits: Tensor, targets: Tensor, known: Tensor) -> Tensor:
        if self.multi_label:
            return findings_bce(logits, targets, known, self.pos_weight)
        return F.cross_entropy(logits.float(), targets.argmax(1))

    def training_step(self, batch: Batch) -> Tensor:
        if batch.targets is None or batch.known is None:
            raise ValueError("a classification batch needs targets and known (LabelledViews gives both)")
        return self.loss(self.logits(batch.views[0]), batch.targets, batch.known)

    @torch.inference_mode()
    def predict(self, items: Dataset, *, batch_size: int = 64, device: torch.device | str = "cpu",
                autocast: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """(logits (N, F) float32, image rows (N,)) of every item of `items` (centred views or
        feature rows), in order, in eval mode; the training mode is restored afterwards."""
        was_training = self.training
        self.eval()
        logits, rows = [], []
        try:
            for batch in DataLoader(items, batch_size=batch_size, shuffle=False, collate_fn=collate):
                with torch.autocast(torch.device(device).type, dtype=autocast, enabled=autocast is not None):
                    logits.append(self.logits(batch.views[0].to(device)).float().cpu())
                rows.append(batch.index)
        finally:
            self.train(was_training)
        return torch.cat(logits), torch.cat(rows)
