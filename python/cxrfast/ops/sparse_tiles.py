"""The compact layout of SparK's sparse encoder: only visible patches are stored, each as a tile.

A batch masked at patch granularity keeps N visible patches. At a stage whose feature map is
`tile` times finer than the patch grid, every visible patch is a (C, tile, tile) tile, so the
stage's features are one (N, C, tile, tile) tensor. The patch grid is the same at every stage,
so a layout is built once per batch and serves all stages. Masked positions are implicitly
zero, which is exactly SparK's "dense layer on the zero-filled input, then zero the masked
outputs" for pointwise layers; layers with a spatial extent gather each tile with a halo.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class TileLayout:
    """Visible patches of a batch, in (batch, row, col) order."""

    batch: Tensor  # (N,) int64
    row: Tensor
    col: Tensor
    grid: tuple[int, int, int]  # (B, patch rows, patch cols)

    @classmethod
    def from_mask(cls, visible: Tensor) -> TileLayout:
        """`visible`: (B, rows, cols) bool, True where a patch is kept."""
        if visible.dtype != torch.bool or visible.ndim != 3:
            raise ValueError(f"visible must be a (B, rows, cols) bool tensor, not {tuple(visible.shape)} {visible.dtype}")
        b, r, c = visible.nonzero(as_tuple=True)
        return cls(b, r, c, tuple(visible.shape))

    @property
    def count(self) -> int:
        return self.batch.numel()

    def mask(self, tile: int) -> Tensor:
        """(B, 1, rows * tile, cols * tile) float mask of visible positions at a stage."""
        b, rows, cols = self.grid
        m = torch.zeros(b, rows, cols, device=self.batch.device)
        m[self.batch, self.row, self.col] = 1.0
        return m.repeat_interleave(tile, 1).repeat_interleave(tile, 2).unsqueeze(1)


def _spans(layout: TileLayout, tile: int, length: int) -> tuple[Tensor, Tensor]:
    """Row and column indices (N, length) of each tile's window, starting at its own corner."""
    steps = torch.arange(length, device=layout.batch.device)
    return layout.row[:, None] * tile + steps, layout.col[:, None] * tile + steps


def gather_tiles(dense: Tensor, layout: TileLayout, tile: int, *, length: int | None = None, before: int = 0,
                 pad_value: float = 0.0) -> Tensor:
    """(B, C, H, W) -> (N, C, length, length): each visible tile's window, starting `before`
    positions above and left of its corner, with `pad_value` outside the image."""
    length = tile if length is None else length
    after = max(0, length - tile - before)
    if before or after:
        dense = F.pad(dense, (before, after, before, after), value=pad_value)
    rows, cols = _spans(layout, tile, length)
    channels_last = dense.permute(0, 2, 3, 1)
    windows = channels_last[layout.batch[:, None, None], rows[:, :, None], cols[:, None, :]]
    return windows.permute(0, 3, 1, 2).contiguous()


def scatter_tiles(tiles: Tensor, layout: TileLayout, fill: Tensor | float = 0.0) -> Tensor:
    """(N, C, t, t) -> (B, C, rows * t, cols * t), masked positions `fill` (a number, or a
    (C,) tensor such as SparK's learned mask token, which then receives its gradient)."""
    n, channels, tile, _ = tiles.shape
    b, grid_rows, grid_cols = layout.grid
    shape = (b, grid_rows * tile, grid_cols * tile, channels)
    if isinstance(fill, Tensor):
        dense = fill.to(tiles.dtype).expand(shape).clone()
    else:
        dense = tiles.new_full(shape, fill)
    rows, cols = _spans(layout, tile, tile)
    dense = dense.index_put((layout.batch[:, None, None], rows[:, :, None], cols[:, None, :]), tiles.permute(0, 2, 3, 1))
    return dense.permute(0, 3, 1, 2)
