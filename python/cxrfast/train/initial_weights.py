"""Where a fine-tuning run's backbone starts (`--init`), and the record of it the run keeps.

- `random`: timm's initialisation, from the run's seed.
- A cxrfast pretraining run directory, or its `encoder.safetensors`: the pretrained encoder. A
  run directory says which backbone it trained (its `config.yaml`); asking for another is an
  error rather than a load that fails on the first mismatched key.
- Any other state-dict file (timm or torchvision layout, `.pth`, `.pt`, `.safetensors`,
  wrapped as {"model": ...} or {"state_dict": ...}): loaded as `load_supervised` does, the
  classifier dropped and an RGB stem summed to one channel (or spread over a CT cache's windows).

The record names the kind, the file and its SHA-256, so a table of results can say exactly which
weights each row started from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from cxrfast.errors import ConfigError
from cxrfast.models import create_backbone
from cxrfast.models.backbones import load_supervised, timm_name

ENCODER_FILE = "encoder.safetensors"
RUN_CONFIG = "config.yaml"


def initial_backbone(backbone: str, init: str, image_size: int | None = None, pool: str | None = None,
                     in_chans: int = 1) -> tuple[nn.Module, dict[str, str]]:
    """(the classifier-free backbone of `in_chans` input channels for `image_size`, ending at
    `pool` (ViTs), the record of its start) for `init`."""
    if init == "random":
        return (create_backbone(backbone, image_size=image_size, pool=pool, in_chans=in_chans),
                {"init": "random", "backbone": backbone})
    path = Path(init)
    if path.is_dir():
        trained = _run_backbone(path)
        if timm_name(trained) != timm_name(backbone):
            raise ConfigError(f"{path}: this pretraining run trained {trained!r}, not the backbone {backbone!r} "
                              f"asked for; set backbone={trained!r}")
        path, kind = path / ENCODER_FILE, "pretraining run"
        if not path.is_file():
            raise ConfigError(f"{path.parent}: the pretraining run has no {ENCODER_FILE} (it has not finished)")
    elif path.is_file():
        kind = "pretraining run" if path.name == ENCODER_FILE else "state dict"
    else:
        raise ConfigError(f"init {init!r} is neither 'random' nor an existing file or pretraining run directory")
    model = create_backbone(backbone, image_size=image_size, pool=pool, in_chans=in_chans)
    load_supervised(model, path, rgb=kind == "state dict")
    return model, {"init": kind, "backbone": backbone, "path": str(path.resolve()), "sha256": _sha256(path)}


def _run_backbone(run: Path) -> str:
    import yaml

    config = run / RUN_CONFIG
    if not config.is_file():
        raise ConfigError(f"{run}: a directory given as init must be a cxrfast pretraining run, with {RUN_CONFIG}")
    try:
        backbone = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("backbone")
    except yaml.YAMLError as e:
        raise ConfigError(f"{config}: not readable YAML ({e})") from e
    if not isinstance(backbone, str):
        raise ConfigError(f"{config}: names no backbone")
    return backbone


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
