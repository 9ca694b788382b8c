"""The workflow layer's training: one loop (`TrainingLoop`) for every run, and its clients —
`pretrain(config)` and `cxrfast pretrain` now, fine-tuning next."""

from cxrfast.train.config import PretrainConfig, TrainConfig, load_config
from cxrfast.train.loop import TrainingLoop
from cxrfast.train.pretrain import Pretraining, RunResult, pretrain

__all__ = ["PretrainConfig", "Pretraining", "RunResult", "TrainConfig", "TrainingLoop", "load_config", "pretrain"]
