"""Run configurations: plain data, from a TOML or YAML file plus `key=value` overrides, checked
before any work starts and saved into the run directory. `TrainConfig` holds what the training
loop needs; `PretrainConfig` adds what a pretraining run needs.

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
from cxrfast.errors import ConfigError

OPTIMIZERS = ("adamw", "lamb", "lars")
PRECISIONS = ("auto", "off", "bf16", "fp16")
LOADERS = ("torch", "dali")


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
    warmup_epochs: float = 10.0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.2  # cosine from weight_decay (SparK: 0.04 -> 0.2)
    clip_grad: float | None = None  # max global gradient norm
    precision: str = "auto"  # auto: bf16 on a GPU that has it, else fp16 on a GPU, off on the CPU
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 200  # optimiser steps between checkpoints (and one per epoch)
    keep_checkpoints: int = 3
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def check(self) -> None:
        """ConfigError for any value the loop cannot work with, before any work starts."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}: one of {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        for name in ("epochs", "batch_size", "accumulate", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 or more, not {self.workers}")


@dataclass
class PretrainConfig(TrainConfig):
    method: str = "spark"  # see cxrfast.methods.METHODS
    data: str = ""  # a prepared cache, a folder of images or a manifest CSV
    backbone: str = "resnet50"
    out: str = "runs/pretrain"
    init_checkpoint: str | None = None  # a supervised state dict to start from
    image_size: int = 224
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


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
                kind: type[TrainConfig] = PretrainConfig, **values) -> TrainConfig:
    """A `kind` config: its defaults, then the file (`.toml`, `.yaml`/`.yml`), then `key=value`
    overrides (values in TOML syntax, bare words as strings; `method_options.mask_ratio=0.75`
    sets a nested key), then keyword `values`."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_file(Path(path))
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
    for f in fields(kind):
        if f.type.startswith("dict") and not isinstance(data.get(f.name, {}), dict):
            raise ConfigError(f"{f.name} must be a table of options, not {data[f.name]!r}")
    return kind(**data)


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
