"""What every self-supervised method is: an `Objective` that also says which views of an image
it takes, checks its options before any work starts, and hands back its backbone."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

from torch import nn
from torch.utils.data import Dataset

from cxrfast.data.augment import Crops, ViewAugment
from cxrfast.data.datasets import SSLViews
from cxrfast.errors import ConfigError
from cxrfast.methods.objective import Objective


class Method(Objective):
    name: ClassVar[str]
    views: ClassVar[int] = 2  # views of each image one step takes
    augment_defaults: ClassVar[dict[str, Any]] = {}  # ViewAugment fields this method's recipe changes

    @classmethod
    def crops(cls, image_size: int, augment: dict[str, Any], options: dict[str, Any]) -> list[Crops]:
        """The views a batch holds for this method (given its `options`): `views` crops at
        `image_size`, with the method's augmentation defaults under the user's `augment` overrides."""
        try:
            return [Crops(ViewAugment(size=image_size, **{**cls.augment_defaults, **augment}), cls.views)]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"augment: {e}") from e

    @classmethod
    def check_options(cls, image_size: int, options: dict[str, Any]) -> None:
        """Raises ConfigError for options the constructor does not take; methods add their own
        checks of the image size and option values."""
        accepted = {name for name, p in inspect.signature(cls.__init__).parameters.items()
                    if p.kind == p.KEYWORD_ONLY and name != "image_size"}  # the size is the run's, not an option
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise ConfigError(f"method {cls.name}: unknown options {unknown}; known: {', '.join(sorted(accepted))}")

    @classmethod
    def training_views(cls, images: Dataset, crops: list[Crops], *, seed: int, run: Path, options: dict[str, Any],
                       rank: int = 0, resume: bool = False) -> tuple[Dataset, dict[str, Any]]:
        """The dataset of `Batch` items a pretraining epoch draws from `images`, and what the
        constructor takes from the data (captioning: the vocabulary of the reports, saved under
        `run` and read back when resuming); the views of `crops` here."""
        return SSLViews(images, crops, seed=seed), {}

    @classmethod
    def build(cls, backbone: nn.Module, image_size: int, options: dict[str, Any]) -> Method:
        """The method on `backbone` for `image_size` images (only methods whose modules depend
        on it take the size)."""
        cls.check_options(image_size, options)
        return cls(backbone, **options)

    def backbone_copy(self) -> nn.Module:
        """A plain copy of the backbone, for evaluation and export."""
        raise NotImplementedError
