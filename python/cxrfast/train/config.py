"""Run configurations: plain data, from a TOML or YAML file plus `key=value` overrides, checked
before any work starts and saved into the run directory. `TrainConfig` holds what the training
loop needs; `PretrainConfig` adds what a pretraining run needs, `FinetuneConfig` what a
fine-tuning run does.

    method = "spark"            # spark | simclr | moco
    data = "cache"              # a prepared cache, a folder of images or a manifest CSV
    backbone = "resnet50"
    [method_options]
    mask_ratio = 0.6

Learning rates are given per 256 images of global batch (`lr`), as SparK, SimCLR and MoCo
state them; the run uses lr · batch_size · accumulate · world size / 256.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cxrfast.atomic import write_text_atomically
from cxrfast.data.ct_display import CTDisplay
from cxrfast.errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "lamb", "lars")
PRECISIONS = ("auto", "off", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")
LOADERS = ("torch", "dali")
CLIP_MODES = ("global", "per_parameter")


@dataclass
class TrainConfig:
    """What the training loop itself needs, for any run (pretraining now, fine-tuning next)."""

    out: str = "runs/run"
    epochs: int = 100
    batch_size: int = 64  # per process
    accumulate: int = 1  # batches per optimiser step
    optimizer: str = "lamb"
    lr: float = 2e-4  # per 256 images of global batch
    min_lr: float = 0.0
    schedule: str = "cosine"  # after the warm-up: a half-cosine to min_lr, or constant (vit-med, Wolf et al.)
    betas: list[float] | None = None  # Adam's (β1, β2); default: (0.9, 0.95) for adamw and lamb, (0.9, 0.999) for adam
    warmup_epochs: float = 10.0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.2  # cosine from weight_decay (SparK: 0.04 -> 0.2)
    clip_grad: float | None = None  # max gradient norm: of all gradients together, or of each parameter's
    clip_grad_mode: str = "global"  # global (torch's clip_grad_norm_) or per_parameter (DINO's and GMML's)
    precision: str = "auto"  # auto: bf16 on a GPU that has it, else fp16 on a GPU, off on the CPU
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 200  # optimiser steps between checkpoints (and one per epoch)
    keep_checkpoints: int = 3
    log_every: int = 10
    patience: int | None = None  # epochs without a better selection value before stopping; None: never

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def check(self) -> None:
        """ConfigError for any value the loop cannot work with, before any work starts."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}: one of {', '.join(OPTIMIZERS)}")
        if self.betas is not None and (len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas)):
            raise ConfigError(f"betas must be two numbers in [0, 1), not {self.betas}")
        if self.betas is not None and self.optimizer == "lars":
            raise ConfigError("betas: LARS has none (it is SGD with momentum 0.9)")
        if self.clip_grad_mode not in CLIP_MODES:
            raise ConfigError(f"clip_grad_mode must be one of {', '.join(CLIP_MODES)}, not {self.clip_grad_mode!r}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ConfigError(f"clip_grad must be positive (or unset), not {self.clip_grad}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        for name in ("epochs", "batch_size", "accumulate", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1 epoch (or unset), not {self.patience}")
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 or more, not {self.workers}")


def check_display(display: str | None) -> None:
    """A CT display policy's text, parsed for its error only (the cache applies it)."""
    if display is not None:
        CTDisplay.parse(display)


@dataclass
class PretrainConfig(TrainConfig):
    method: str = "spark"  # see cxrfast.methods.METHODS
    data: str = ""  # a prepared cache, a folder of images or a manifest CSV
    display: str | None = None  # a CT cache of HU: the window(s) the network sees (lung, lung+bone, min_max)
    backbone: str = "resnet50"
    out: str = "runs/pretrain"
    init_checkpoint: str | None = None  # a supervised state dict to start from
    image_size: int = 224
    drop_path: float | None = None  # stochastic depth of the backbone (timm's drop_path_rate; GMML, DINO: 0.1)
    loader: str = "torch"  # torch (cxrfast's DataLoader) or dali (the DALI pipeline; GPU decoding on a GPU)
    probe_labels: str | None = None  # a labelled manifest CSV or cache for the linear-probe monitor
    probe_every: int = 0  # epochs between probes (0: none; with probe_labels, also at the end)
    probe_findings: list[str] | None = None  # default: every 1/0/−1/blank column
    method_options: dict[str, Any] = field(default_factory=dict)  # the method's constructor options
    augment: dict[str, Any] = field(default_factory=dict)  # ViewAugment fields over the method's defaults

    def check(self) -> None:
        super().check()
        if self.image_size < 1:
            raise ConfigError(f"image_size must be at least 1, not {self.image_size}")
        if self.loader not in LOADERS:
            raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, not {self.loader!r}")
        if not self.data:
            raise ConfigError("data: give a prepared cache, a folder of images or a manifest CSV")
        if not Path(self.data).exists():
            raise ConfigError(f"data: {self.data} does not exist")
        check_display(self.display)


TASKS = ("classification", "segmentation")
MODES = ("linear", "full", "frozen_then_full")
SPLITS = ("auto", "official", "patient")
SELECT_ON = ("auto", "auroc", "dice", "loss")
POOLS = ("token", "avg")


@dataclass
class FinetuneConfig(TrainConfig):
    """A fine-tuning run. The defaults train with AdamW at 4e-4 per 256 images (Adam's 1e-4 at
    batch 64, Wolf et al.'s), select on the validation mean AUROC and stop after 10 epochs
    without a better one."""

    task: str = "classification"  # see TASKS
    data: str = ""  # a prepared cache or a labelled manifest CSV (segmentation: a manifest with a mask column)
    display: str | None = None  # a CT cache of HU: the window(s) the network sees (lung, lung+bone, min_max)
    init: str = "random"  # random | a pretraining run directory | encoder.safetensors | any state-dict file
    backbone: str = "resnet50"
    out: str = "runs/finetune"
    mode: str = "full"  # linear | full | frozen_then_full
    findings: list[str] | None = None  # default: the CheXpert competition findings present, else every finding
    single_label: bool = False  # one class per image (softmax) instead of independent findings (sigmoid)
    uncertainty: str = "ignore"  # what −1 labels become: ignore (U-Ignore), zeros (U-Zeros), ones (U-Ones)
    uncertainty_per_finding: dict[str, str] = field(default_factory=dict)  # finding -> policy, over `uncertainty`
    pos_weight: bool = False  # weigh each finding's positives by negatives / positives (vit-med)
    label_fraction: float = 1.0  # share of the training split's images fine-tuned on (nested, by patient)
    split: str = "auto"  # auto: the labels' own split column where present, else by patient
    split_fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "validate": 0.1, "test": 0.1})
    image_size: int = 224
    augment: dict[str, Any] = field(default_factory=dict)  # ViewAugment fields over fine-tuning's defaults
    select_on: str = "auto"  # auto: the validation mean AUROC (classification) or Dice (segmentation); or loss
    mask_column: str = "lung_mask"  # segmentation: the manifest column naming each image's mask file(s)
    frozen_epochs: int = 0  # frozen_then_full: epochs that train the classifier alone
    backbone_lr: float | None = None  # per 256 images; default: lr
    layer_decay: float | None = None  # ViTs: layer l trains at layer_decay^(L - l) of the rate (MAE)
    pool: str | None = None  # ViTs: token (the normalised class token, vit-med) or avg (mean patch token)
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 4e-4
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    weight_decay_end: float = 0.05
    patience: int | None = 10

    def check(self) -> None:
        super().check()
        choices = {"task": TASKS, "mode": MODES, "split": SPLITS, "select_on": SELECT_ON}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.pool is not None and self.pool not in POOLS:
            raise ConfigError(f"pool must be one of {', '.join(POOLS)} (or unset), not {self.pool!r}")
        if not self.data:
            raise ConfigError("data: give a prepared cache or a labelled manifest CSV")
        if not Path(self.data).exists():
            raise ConfigError(f"data: {self.data} does not exist")
        check_display(self.display)
        if not 0 < self.label_fraction <= 1:
            raise ConfigError(f"label_fraction must be in (0, 1], not {self.label_fraction}")
        if self.image_size < 1:
            raise ConfigError(f"image_size must be at least 1, not {self.image_size}")
        if (self.mode == "frozen_then_full") != (self.frozen_epochs > 0):
            raise ConfigError("frozen_epochs: give at least 1 with mode frozen_then_full, and none otherwise "
                              f"(mode {self.mode!r}, frozen_epochs {self.frozen_epochs})")
        if self.frozen_epochs >= self.epochs:
            raise ConfigError(f"frozen_epochs ({self.frozen_epochs}) must be fewer than epochs ({self.epochs})")
        if self.mode == "linear" and (self.layer_decay is not None or self.backbone_lr is not None):
            raise ConfigError("layer_decay and backbone_lr train the backbone; mode linear keeps it frozen")
        if self.single_label and self.pos_weight:
            raise ConfigError("pos_weight weighs independent findings; a single_label task has one class per image")
        wanted = {"classification": "auroc", "segmentation": "dice"}[self.task]
        if self.select_on not in ("auto", "loss", wanted):
            raise ConfigError(f"select_on {self.select_on!r} is not a {self.task} measure: auto, {wanted} or loss")
        if self.task == "segmentation" and (self.mode != "full" or self.single_label or self.pos_weight):
            raise ConfigError("segmentation trains mode full, without single_label or pos_weight")
        if self.backbone_lr is not None and self.backbone_lr <= 0:
            raise ConfigError(f"backbone_lr must be positive, not {self.backbone_lr}")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
                kind: type[TrainConfig] = PretrainConfig, preset: dict[str, Any] | None = None,
                **values) -> TrainConfig:
    """A `kind` config: its defaults, then a `preset` (a shipped recipe's keys), then the file
    (`.toml`, `.yaml`/`.yml`), then `key=value` overrides (values in TOML syntax, bare words as
    strings; `method_options.mask_ratio=0.75` sets a nested key), then keyword `values`. A key
    set again replaces the earlier value whole, a table included."""
    data: dict[str, Any] = dict(preset or {})
    if path is not None:
        data.update(_read_file(Path(path)))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        _set(data, key.strip(), _parse_value(text.strip()))
    data.update(values)
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}; known: {', '.join(sorted(known))}")
    types = {f.name: f.type for f in fields(kind)}
    return kind(**{name: _typed(name, types[name], value) for name, value in data.items()})


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def _typed(name: str, annotation: str, value: Any) -> Any:
    """`value` as the field's annotation wants it ("none" or "null" unsets an optional key; an
    int is a float where a float is wanted), else a ConfigError naming the key."""
    kinds = [part.strip() for part in annotation.split("|")]
    if "None" in kinds and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    for kind in kinds:
        if kind in _SCALARS and isinstance(value, _SCALARS[kind]) and not (kind != "bool" and isinstance(value, bool)):
            return value
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind.startswith("dict") and isinstance(value, dict):
            return value
        if kind.startswith("list") and isinstance(value, list):
            element = kind[len("list["):-1] if kind.startswith("list[") else "str"
            if element == "float" and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                return [float(v) for v in value]
            if element in _SCALARS and all(isinstance(v, _SCALARS[element]) and not isinstance(v, bool)
                                           for v in value):
                return value
    article = {"dict": "a table of options", "list[str]": "a list of names", "list[float]": "a list of numbers",
               "list[int]": "a list of ints", "int": "an int"}
    wanted = article.get(kinds[0], article.get(kinds[0].split("[")[0], f"a {kinds[0]}"))
    raise ConfigError(f"{name} must be {wanted}" + (" (or none)" if "None" in kinds else "") + f", not {value!r}")


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if path.suffix == ".toml":
            with open(path, "rb") as f:
                data = tomllib.load(f)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        else:
            raise ConfigError(f"{path}: a config is a .toml or .yaml file")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from e
    except Exception as e:  # yaml's errors, without importing yaml at module level
        raise ConfigError(f"{path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of keys")
    return data


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for parent in parents:
        data = data.setdefault(parent, {})
        if not isinstance(data, dict):
            raise ConfigError(f"override {key}: {parent} is not a table")
    data[last] = value


def save_config(config: TrainConfig, path: Path) -> None:
    """As YAML (pyyaml's writer), which `load_config` reads back. Written atomically."""
    import yaml

    write_text_atomically(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
