"""Multi-crop views (SwAV's, then DINO's): 2 global crops at the run's image size and
`local_crops` small ones at `local_size`, each size with its own scale range and batched through
the backbone once. The crop options are constructor options of the method; their defaults are
the method's own (SwAV's and DINO's differ in the scales and the number of local crops)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from cxrfast.data.augment import Crops, ViewAugment
from cxrfast.data.batch import Batch
from cxrfast.errors import ConfigError
from cxrfast.methods.method import Method

GLOBAL_CROPS = 2
CROP_OPTIONS = ("local_crops", "local_size", "global_scale", "local_scale")


class MultiCropMethod(Method):
    views = GLOBAL_CROPS

    @classmethod
    def crops(cls, image_size: int, augment: dict[str, Any], options: dict[str, Any]) -> list[Crops]:
        """2 global crops at `image_size`, scale `global_scale`, and `local_crops` at `local_size`,
        scale `local_scale`; the user's `augment` applies to both sizes."""
        o = cls.crop_options(options)
        try:
            shared = {**cls.augment_defaults, **augment}
            crops = [Crops(ViewAugment(size=image_size, **{"scale": tuple(o["global_scale"]), **shared}), GLOBAL_CROPS)]
            if o["local_crops"]:
                crops.append(Crops(ViewAugment(size=o["local_size"], **{**shared, "scale": tuple(o["local_scale"])}),
                                   o["local_crops"]))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"augment: {e}") from e
        return crops

    @classmethod
    def crop_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The crop options in `options`, the method's defaults for the others."""
        defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                    if name in CROP_OPTIONS}
        return {**defaults, **{k: v for k, v in options.items() if k in CROP_OPTIONS}}

    @staticmethod
    def crop_features(backbone: torch.nn.Module, batch: Batch) -> Tensor:
        """The backbone's features of every crop (V·B, F), crop by crop: the global crops in one
        pass, the local ones in another."""
        features = [backbone(torch.cat(batch.views[:GLOBAL_CROPS]))]
        if len(batch.views) > GLOBAL_CROPS:
            features.append(backbone(torch.cat(batch.views[GLOBAL_CROPS:])))
        return torch.cat(features)
