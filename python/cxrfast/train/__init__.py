"""The workflow layer's training: one loop (`TrainingLoop`) for every run, and its clients —
`pretrain(config)` and `cxrfast pretrain` now, fine-tuning next (its objective, `Classification`,
and where its backbone starts, `initial_backbone`, are here already)."""

from cxrfast.train.classification import Classification
from cxrfast.train.config import PretrainConfig, TrainConfig, load_config
from cxrfast.train.initial_weights import initial_backbone
from cxrfast.train.loop import TrainingLoop
from cxrfast.train.pretrain import Pretraining, RunResult, pretrain

__all__ = ["Classification", "PretrainConfig", "Pretraining", "RunResult", "TrainConfig", "TrainingLoop",
           "initial_backbone", "load_config", "pretrain"]
