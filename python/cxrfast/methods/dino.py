"""DINO (Caron et al., 2021): a student distils an EMA teacher over multi-crop views, on vision
transformers or CNNs (DINO on ResNet-50 is one of the paper's settings).

The student sees 2 global crops and `local_crops` small ones, each size batched through the
backbone once; the teacher, an EMA of the student's parameters (`cxrfast.methods.ema`: momentum
from `momentum` to 1 on a cosine over the run's steps; batch-norm statistics stay its own), sees
the global crops only and gets no gradient. Both end in DINO's head
(`cxrfast.models.heads.DINOHead`); the loss is cxrfast's fused `DINOLoss` with its all-reduced
centre. The teacher temperature warms up linearly over epochs, as DINO's per-epoch schedule:
`warmup_teacher_temp` → `teacher_temp` over `warmup_teacher_temp_epochs`. DINO's code defaults
(0.04, constant) are these options' defaults; its paper's 0.04 → 0.07 over 30 epochs is the
`dino` recipe's. The head's last layer is frozen for the first `freeze_last_layer` epochs.
Stochastic depth (the run's `drop_path`) is the student's only: the teacher's is switched off.

Crops for greyscale radiographs: brightness, contrast, gamma, blur and flips, no hue, saturation
or grey-scale conversion (they mean nothing on one channel) and no solarisation by default (it
inverts the bright bone and device intensities a radiograph's findings are read from). Each crop
size has one augmentation, so the blur probability is 0.5 for all crops rather than DINO's
1.0 / 0.1 for the two global ones.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.losses import DINOLoss
from cxrfast.methods.ema import EMAFollower
from cxrfast.methods.multicrop import GLOBAL_CROPS, MultiCropMethod
from cxrfast.models.heads import DINOHead


def teacher_temperature(epoch: int, start: float, end: float, warmup_epochs: int) -> float:
    """DINO's schedule: `warmup_epochs` values linearly from start to end (both included), then end."""
    if epoch >= warmup_epochs:
        return end
    return start + (end - start) * epoch / max(1, warmup_epochs - 1)


class DINO(MultiCropMethod):
    name = "dino"
    augment_defaults = dict(hflip=0.5, rotation=0.0, brightness=0.4, contrast=0.4, gamma=0.2, blur=0.5)

    def __init__(self, backbone: nn.Module, *, out_dim: int = 65536, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, norm_last_layer: bool = True, teacher_temp: float = 0.04,
                 warmup_teacher_temp: float = 0.04, warmup_teacher_temp_epochs: int = 0, student_temp: float = 0.1,
                 center_momentum: float = 0.9, momentum: float = 0.996, freeze_last_layer: int = 1,
                 local_crops: int = 8, local_size: int = 96, global_scale: tuple[float, float] = (0.4, 1.0),
                 local_scale: tuple[float, float] = (0.05, 0.4)):
        super().__init__()
        if not 0 <= momentum <= 1 or warmup_teacher_temp_epochs < 0 or freeze_last_layer < 0 or local_crops < 0:
            raise ConfigError("DINO: momentum in [0, 1]; warm-up epochs, frozen epochs and local crops not negative")
        self.backbone = backbone
        self.head = DINOHead(backbone.num_features, out_dim, hidden_dim, bottleneck_dim,
                             norm_last_layer=norm_last_layer)
        self.teacher_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        for m in self.teacher_backbone.modules():  # timm's DropPath: the teacher runs whole
            if hasattr(m, "drop_prob"):
                m.drop_prob = 0.0
        try:
            self.loss = DINOLoss(out_dim, teacher_temp, student_temp, center_momentum, GLOBAL_CROPS)
        except ValueError as e:
            raise ConfigError(f"DINO: {e}") from e
        self.temperatures = (warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs)
        self.ema, self.freeze_last_layer = EMAFollower(momentum), freeze_last_layer
        self.teacher_temp, self.epoch = warmup_teacher_temp, 0

    def schedule(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        self.ema.schedule(step, total_steps)
        self.epoch = step // steps_per_epoch
        self.teacher_temp = teacher_temperature(self.epoch, *self.temperatures)

    def after_backward(self, step: int) -> None:
        if self.epoch < self.freeze_last_layer:  # DINO's cancel_gradients_last_layer
            for p in self.head.last_layer.parameters():
                p.grad = None

    def training_step(self, batch: Batch) -> Tensor:
        """`batch.views`: the global crops first, then the local ones."""
        self.ema.follow([(self.teacher_backbone, self.backbone), (self.teacher_head, self.head)])
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(torch.cat(batch.views[:GLOBAL_CROPS])))
        student = self.head(self.crop_features(self.backbone, batch))
        return self.loss(student, teacher, teacher_temp=self.teacher_temp)

    def backbone_copy(self) -> nn.Module:
        """The teacher's backbone, the one DINO evaluates and releases."""
        return copy.deepcopy(self.teacher_backbone).requires_grad_(True)
