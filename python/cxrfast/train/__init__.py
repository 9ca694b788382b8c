"""The pretraining engine: `pretrain(config)` and `cxrfast pretrain`."""

from cxrfast.train.config import PretrainConfig, load_config
from cxrfast.train.engine import RunResult, Trainer, pretrain

__all__ = ["PretrainConfig", "RunResult", "Trainer", "load_config", "pretrain"]
