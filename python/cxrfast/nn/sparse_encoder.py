"""SparK's encoders over a CNN backbone: `SparseEncoder` computes only visible patches,
`DenseMaskedEncoder` is SparK's dense simulation (the reference and the baseline).

    encoder = SparseEncoder(timm.create_model("resnet50", in_chans=1))
    features = encoder(images, visible)  # dense (B, C_s, H/d_s, W/d_s), zeros where masked

`visible` is (B, H/p, W/p) bool at patch granularity, True where a patch is kept. The stages are
the backbone's submodules whose outputs are returned: by default timm's `feature_info` entries
from stride 4 on (SparK's four scales), and the patch size defaults to the deepest stride. The
backbone is converted in place (its layers' classes swapped, weights untouched) until `restore()`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cxrfast.errors import ConfigError
from cxrfast.nn.masked_layers import DENSE_MASKED, SPARSE, MaskContext, convert, mask_outputs, restore
from cxrfast.ops.sparse_tiles import TileLayout, gather_tiles, scatter_tiles


class _MaskedEncoder(nn.Module):
    forms: dict[type, type]

    def __init__(self, backbone: nn.Module, patch_size: int | None = None, *, stages: Sequence[str] | None = None,
                 forward_method: str = "forward_features", kept: int | None = None):
        super().__init__()
        names = dict(backbone.named_modules())
        strides = {entry["module"]: entry["reduction"] for entry in getattr(backbone, "feature_info", None) or []}
        if stages is None:  # SparK's scales: stride 4 and deeper
            stages = [name for name, stride in strides.items() if stride >= 4]
            if not stages:
                raise ConfigError("stages are needed: the backbone has no timm feature_info naming its stages")
        missing = [s for s in stages if s not in names]
        if missing:
            raise ConfigError(f"backbone has no module named {missing}; stages must name its submodules")
        self.backbone = backbone
        self.stages = list(stages)
        if patch_size is None:
            if not all(name in strides for name in self.stages):
                raise ConfigError("patch_size is needed: the backbone has no timm feature_info giving its strides")
            patch_size = max(strides[name] for name in self.stages)
        self.patch_size = patch_size
        self.kept = kept  # visible patches per sample, when fixed: the layout then needs no host sync
        self.forward_method = forward_method if hasattr(backbone, forward_method) else "forward"
        self.context = MaskContext()
        self._captured: dict[str, Tensor] = {}
        self._capture_hooks = [names[name].register_forward_hook(self._capture(name)) for name in self.stages]
        self._swapped = convert(backbone, self.forms, self.context)

    def _capture(self, name: str):
        def hook(module, inputs, output):
            self._captured[name] = output
        return hook

    def restore(self) -> nn.Module:
        """Give the backbone its original layer classes back, and return it."""
        for handle in self._capture_hooks:
            handle.remove()
        restore(self._swapped)
        self._swapped, self._capture_hooks = [], []
        return self.backbone

    def forward(self, images: Tensor, visible: Tensor) -> list[Tensor]:
        b, _, height, width = images.shape
        grid = (b, height // self.patch_size, width // self.patch_size)
        if height % self.patch_size or width % self.patch_size or tuple(visible.shape) != grid:
            raise ValueError(f"images {tuple(images.shape)} and mask {tuple(visible.shape)} do not match patch "
                             f"size {self.patch_size}: the mask must be (B, H/{self.patch_size}, W/{self.patch_size})")
        layout = TileLayout.from_mask(visible, self.kept)
        self.context.layout = layout
        self._captured.clear()
        try:
            getattr(self.backbone, self.forward_method)(self._input(images, layout))
            return [self._output(self._captured[name], layout) for name in self.stages]
        finally:
            self.context.layout = None
            self._captured.clear()


class SparseEncoder(_MaskedEncoder):
    """Computes the backbone on visible patches only, as (N, C, t, t) tiles."""

    forms = SPARSE

    def _input(self, images: Tensor, layout: TileLayout) -> Tensor:
        return gather_tiles(images, layout, self.patch_size).contiguous(memory_format=torch.channels_last)

    def _output(self, tiles: Tensor, layout: TileLayout) -> Tensor:
        return scatter_tiles(tiles, layout)


class DenseMaskedEncoder(_MaskedEncoder):
    """SparK's simulation: every layer dense on the whole map, then masked."""

    forms = DENSE_MASKED

    def __init__(self, backbone: nn.Module, patch_size: int | None = None, *, stages: Sequence[str] | None = None,
                 forward_method: str = "forward_features", kept: int | None = None):
        super().__init__(backbone, patch_size, stages=stages, forward_method=forward_method, kept=kept)
        self._hooks = mask_outputs(backbone, self.context)

    def restore(self) -> nn.Module:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        return super().restore()

    def _input(self, images: Tensor, layout: TileLayout) -> Tensor:
        return images * layout.mask(self.patch_size).to(images.dtype)

    def _output(self, features: Tensor, layout: TileLayout) -> Tensor:
        return features
