"""The layers a CNN backbone is made of, turned into SparK's masked forms in place.

A backbone is converted by swapping the class of its convolution, pooling and batch-norm
modules for a subclass that reads the current mask from a shared `MaskContext`: parameters,
buffers and state-dict keys stay exactly the original module's (same weights, no copy), and
`restore` swaps the classes back. Two forms share this mechanism:

- sparse: features are visible tiles (`cxrfast.ops.sparse_tiles`); only they are computed.
- dense-masked: SparK's original simulation, every layer dense and then multiplied by the mask
  (hooks on every layer); the reference the sparse form must equal, and its baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cxrfast.ops.sparse_conv import sparse_conv2d
from cxrfast.ops.sparse_pool import sparse_avg_pool2d, sparse_max_pool2d
from cxrfast.ops.sparse_tiles import TileLayout


@dataclass
class MaskContext:
    """The mask of the batch being encoded; owned by one encoder, set per forward."""

    layout: TileLayout | None = None
    patch_size: int = 32

    def require(self, stride: int | None = None) -> TileLayout:
        """The layout of features `stride` times coarser than the image: the patch layout, or its
        coarsening where the stride exceeds the patch size (None: the patch layout)."""
        if self.layout is None:
            raise RuntimeError("a masked layer ran outside its encoder's forward")
        if stride is None or stride <= self.patch_size:
            return self.layout
        return self.layout.coarsen(stride // self.patch_size)

    def dense_mask(self, like: Tensor) -> Tensor:
        """(B, 1, H, W) mask at the resolution of the dense feature map `like`."""
        return self.require().mask_at(like.shape[-2]).to(like.dtype)


class _Masked:
    """Mixin: the context is attached as a plain attribute, not a submodule; so is the stride of
    the layer's input relative to the image, which tells a sparse layer which layout its tiles
    are in (None where unknown: the patch layout)."""

    mask_context: MaskContext
    input_stride: int | None


# --- sparse forms: inputs and outputs are (N, C, t, t) tiles -----------------------------------

class SparseConv2d(nn.Conv2d, _Masked):
    def forward(self, tiles: Tensor) -> Tensor:
        context, stride = self.mask_context, self.input_stride
        out_layout = None if stride is None else context.require(stride * self.stride[0])
        return sparse_conv2d(tiles, context.require(stride), self.weight, self.bias, self.stride, self.padding,
                             self.dilation, self.groups, out_layout)


class SparseMaxPool2d(nn.MaxPool2d, _Masked):
    def forward(self, tiles: Tensor) -> Tensor:
        if self.ceil_mode:
            raise ValueError("sparse max pooling does not support ceil_mode")
        return sparse_max_pool2d(tiles, self.mask_context.require(self.input_stride), self.kernel_size, self.stride, self.padding,
                                 self.dilation)


class SparseAvgPool2d(nn.AvgPool2d, _Masked):
    def forward(self, tiles: Tensor) -> Tensor:
        return sparse_avg_pool2d(tiles, self.mask_context.require(self.input_stride), self.kernel_size, self.stride, self.padding,
                                 self.count_include_pad)


class SparseBatchNorm2d(nn.BatchNorm2d, _Masked):
    """Over (N, C, t, t) tiles BatchNorm2d's statistics are already the visible positions' own,
    running statistics included. The form only states, when training, what batch statistics need
    (some tiles, more than one value per channel): where the tile count is data-dependent (cells
    coarser than the patches, or no fixed kept count), torch.compile can then trace on instead of
    guarding on that count."""

    def forward(self, tiles: Tensor) -> Tensor:
        if self.training:
            torch._check(tiles.shape[0] > 0, lambda: "no visible tiles to take batch statistics of")
            torch._check(tiles.shape[0] * tiles.shape[2] * tiles.shape[3] > 1,
                         lambda: "Expected more than 1 value per channel when training")
        return super().forward(tiles)


SPARSE = {nn.Conv2d: SparseConv2d, nn.MaxPool2d: SparseMaxPool2d, nn.AvgPool2d: SparseAvgPool2d,
          nn.BatchNorm2d: SparseBatchNorm2d}


# --- dense-masked form (SparK's simulation): every layer dense, its output then masked ----------
# Outputs are masked by `mask_outputs` hooks; only BatchNorm needs a form of its own, for its
# statistics over visible positions.

class MaskedBatchNorm2d(nn.BatchNorm2d, _Masked):
    """Statistics over visible positions only, gathered with the mask (SparK's SparseBatchNorm2d)."""

    def forward(self, x: Tensor) -> Tensor:
        momentum = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        visible = self.mask_context.dense_mask(x)[:, 0] > 0
        rows = x.permute(0, 2, 3, 1)
        out = torch.zeros_like(rows)
        out[visible] = torch.nn.functional.batch_norm(
            rows[visible], self.running_mean, self.running_var, self.weight, self.bias,
            self.training or not self.track_running_stats, momentum, self.eps)
        return out.permute(0, 3, 1, 2)


DENSE_MASKED = {nn.BatchNorm2d: MaskedBatchNorm2d}


def mask_outputs(module: nn.Module, context: MaskContext) -> list:
    """Hooks zeroing the masked positions of every layer's 4-d output, channels first
    (B, C, H, W) or last (B, H, W, C) as ConvNeXt's blocks permute them. Returns the handles."""

    def on_grid(height: int, width: int) -> bool:
        """Whether a height × width map is the patch grid refined or coarsened evenly."""
        _, rows, cols = context.layout.grid
        if height >= rows:
            return height % rows == 0 and width == cols * (height // rows)
        return rows % height == 0 and width * (rows // height) == cols

    def hook(layer, inputs, output):
        if not isinstance(output, Tensor) or output.ndim != 4 or context.layout is None:
            return None
        if on_grid(output.shape[2], output.shape[3]):
            return output * context.layout.mask_at(output.shape[2]).to(output.dtype)
        if on_grid(output.shape[1], output.shape[2]):
            return output * context.layout.mask_at(output.shape[1]).to(output.dtype).permute(0, 2, 3, 1)
        return None

    return [layer.register_forward_hook(hook) for layer in module.modules()]


def convert(module: nn.Module, forms: dict[type, type], context: MaskContext,
            input_strides: dict[nn.Module, int] | None = None) -> list[tuple[nn.Module, type]]:
    """Swap the classes of `module`'s layers for their masked forms; returns what `restore` needs.
    Only exact classes are swapped: a subclass may override forward in ways the form would lose."""
    swapped = []
    for layer in module.modules():
        form = forms.get(type(layer))
        if form is not None:
            swapped.append((layer, type(layer)))
            layer.__class__ = form
            layer.mask_context = context
            layer.input_stride = (input_strides or {}).get(layer)
    return swapped


def restore(swapped: list[tuple[nn.Module, type]]) -> None:
    for layer, original in swapped:
        layer.__class__ = original
        del layer.mask_context, layer.input_stride
