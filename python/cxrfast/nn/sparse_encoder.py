"""SparK's encoders over a CNN backbone: `SparseEncoder` computes only visible patches,
`DenseMaskedEncoder` is SparK's dense simulation (the reference and the baseline).

    encoder = SparseEncoder(timm.create_model("resnet50", in_chans=1))
    features = encoder(images, visible)  # dense (B, C_s, H/d_s, W/d_s), zeros where masked

`visible` is (B, H/p, W/p) bool at patch granularity, True where a patch is kept. The stages are
the backbone's submodules whose outputs are returned: by default timm's `feature_info` entries
from stride 4 on (SparK's four scales). The patch size defaults to the deepest stage's stride
(SparK's choice) and may be smaller (8, 16): stages coarser than the patch grid are then active
where any patch of a cell is visible. The backbone is converted in place (its layers' classes
swapped, weights untouched) until `restore()`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode

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
        self.forward_method = forward_method if hasattr(backbone, forward_method) else "forward"
        input_strides, self.stage_strides = _probe_strides(backbone, self.forward_method, self.stages)
        self.patch_size = max(self.stage_strides.values()) if patch_size is None else patch_size
        # Images are cut into whole patches, and the deepest stage into whole cells of patches.
        self.size_multiple = max(self.patch_size, *self.stage_strides.values())
        self.kept = kept  # visible patches per sample, when fixed: the layout then needs no host sync
        self.context = MaskContext(patch_size=self.patch_size)
        self._captured: dict[str, Tensor] = {}
        self._capture_hooks = [names[name].register_forward_hook(self._capture(name)) for name in self.stages]
        self._swapped = convert(backbone, self.forms, self.context, input_strides)

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

    def backbone_copy(self) -> nn.Module:
        """A plain copy of the backbone (original layer classes, no hooks) for evaluation and
        export while this encoder keeps training. Not `deepcopy(self).restore()`: a copied hook
        handle would remove the original's hook."""
        twin = copy.deepcopy(self.backbone)
        position = {id(m): k for k, m in enumerate(self.backbone.modules())}
        twins = list(twin.modules())
        restore([(twins[position[id(layer)]], original) for layer, original in self._swapped])
        for module in twins:
            module._forward_hooks.clear()
            module._forward_pre_hooks.clear()
        return twin

    def forward(self, images: Tensor, visible: Tensor) -> list[Tensor]:
        b, _, height, width = images.shape
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(f"images {tuple(images.shape)}: height and width must be multiples of "
                             f"{self.size_multiple} (the patch size and the network's total stride)")
        grid = (b, height // self.patch_size, width // self.patch_size)
        if tuple(visible.shape) != grid:
            raise ValueError(f"images {tuple(images.shape)} and mask {tuple(visible.shape)} do not match patch "
                             f"size {self.patch_size}: the mask must be (B, H/{self.patch_size}, W/{self.patch_size})")
        layout = TileLayout.from_mask(visible, self.kept)
        self.context.layout = layout
        self._captured.clear()
        try:
            getattr(self.backbone, self.forward_method)(self._input(images, layout))
            return [self._output(self._captured[name], name) for name in self.stages]
        finally:
            self.context.layout = None
            self._captured.clear()


PROBE_SIZE = 256  # a shape-only image this size runs through the backbone once, to learn its strides


def _probe_strides(backbone: nn.Module, forward_method: str, stages: list[str]) -> tuple[dict, dict[str, int]]:
    """The stride (relative to the image) of every convolution's and pooling's input, and of every
    stage's output: one forward of fake tensors (shapes only, nothing computed), eval mode, modes
    restored afterwards."""
    named = dict(backbone.named_modules())
    first = next((m for m in named.values() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ConfigError("the backbone has no Conv2d: SparseEncoder wraps convolutional networks")
    inputs: dict[nn.Module, int] = {}
    outputs: dict[str, int] = {}

    # The hooks return None: anything else would replace the layer's input or output.
    def record_input(layer, args):
        inputs.setdefault(layer, PROBE_SIZE // args[0].shape[-2])

    def record_output(name):
        def hook(layer, args, output):
            outputs.setdefault(name, PROBE_SIZE // output.shape[-2])
        return hook

    hooks = [m.register_forward_pre_hook(record_input) for m in named.values()
             if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    hooks += [named[name].register_forward_hook(record_output(name)) for name in stages]
    modes = {m: m.training for m in named.values()}
    try:
        backbone.eval()
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True):
            getattr(backbone, forward_method)(torch.empty(1, first.in_channels, PROBE_SIZE, PROBE_SIZE,
                                                          dtype=first.weight.dtype))
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    return inputs, outputs


class SparseEncoder(_MaskedEncoder):
    """Computes the backbone on visible patches only, as (N, C, t, t) tiles."""

    forms = SPARSE

    def _input(self, images: Tensor, layout: TileLayout) -> Tensor:
        return gather_tiles(images, layout, self.patch_size).contiguous(memory_format=torch.channels_last)

    def _output(self, tiles: Tensor, stage: str) -> Tensor:
        return scatter_tiles(tiles, self.context.require(self.stage_strides[stage]))


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

    def _output(self, features: Tensor, stage: str) -> Tensor:
        return features
