"""The workflow layer's training: one loop (`TrainingLoop`) for every run, and its clients —
`pretrain(config)` / `cxrfast pretrain` and `finetune(config)` / `cxrfast finetune`."""

from cxrfast.train.classification import Classification
from cxrfast.train.config import FinetuneConfig, PretrainConfig, TrainConfig, load_config
from cxrfast.train.finetune import FinetuneResult, Finetuning, finetune
from cxrfast.train.initial_weights import initial_backbone
from cxrfast.train.linear_probe import ProbeResult, ProbeSet, linear_probe
from cxrfast.train.loop import TrainingLoop
from cxrfast.train.pretrain import Pretraining, RunResult, pretrain
from cxrfast.train.segmentation import Segmentation

__all__ = ["Classification", "FinetuneConfig", "FinetuneResult", "Finetuning", "PretrainConfig", "Pretraining",
           "ProbeResult", "ProbeSet", "RunResult", "Segmentation", "TrainConfig", "TrainingLoop", "finetune",
           "initial_backbone", "linear_probe", "load_config", "pretrain"]
