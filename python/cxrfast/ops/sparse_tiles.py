"""The compact layout of SparK's sparse encoder: only visible patches are stored, each as a tile.

A batch masked at patch granularity keeps N visible patches. At a stage whose feature map is
`tile` times finer than the patch grid, every visible patch is a (C, tile, tile) tile, so the
stage's features are one (N, C, tile, tile) tensor. The patch grid is the same at every stage,
so a layout is built once per batch and serves all stages. Masked positions are implicitly
zero, which is exactly SparK's "dense layer on the zero-filled input, then zero the masked
outputs" for pointwise layers; layers with a spatial extent gather each tile with a halo.

Patches may be smaller than the network's total stride (8 or 16 px against ResNet's 32). A stage
coarser than the patch grid has one position per cell of `factor` × `factor` patches, active
where any of its patches is visible (the features that saw some visible input); its layout is
the patch layout coarsened, built once per batch as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class TileLayout:
    """Visible patches of a batch, in (batch, row, col) order."""

    batch: Tensor  # (N,) int64
    row: Tensor
    col: Tensor
    grid: tuple[int, int, int]  # (B, patch rows, patch cols)
    # Index tables derived from the layout (e.g. convolution neighbours), built once per batch.
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_mask(cls, visible: Tensor, kept: int | None = None) -> TileLayout:
        """`visible`: (B, rows, cols) bool, True where a patch is kept. With `kept`, the number of
        visible patches in every sample (SparK keeps the same number), the layout is built
        without `nonzero`, so a GPU never waits for the host."""
        if visible.dtype != torch.bool or visible.ndim != 3:
            raise ValueError(f"visible must be a (B, rows, cols) bool tensor, not {tuple(visible.shape)} {visible.dtype}")
        b, rows, cols = visible.shape
        if kept is None:
            batch, row, col = visible.nonzero(as_tuple=True)
            return cls(batch, row, col, (b, rows, cols))
        if visible.device.type == "cpu":
            counts = visible.view(b, -1).sum(1)
            if torch.compiler.is_compiling():  # a graph cannot branch on the counts: it asserts them in place
                torch._assert_async((counts == kept).all(), f"kept={kept}, but a sample keeps another count")
            elif not bool((counts == kept).all()):
                raise ValueError(f"kept={kept}, but the samples keep {counts.tolist()} patches")
        # Visible patches first, each sample's in raster order: the same order nonzero gives.
        order = torch.argsort(~visible.view(b, -1), dim=1, stable=True)[:, :kept]
        batch = torch.arange(b, device=visible.device).repeat_interleave(kept)
        flat = order.reshape(-1)
        return cls(batch, flat // cols, flat % cols, (b, rows, cols))

    @property
    def count(self) -> int:
        return self.batch.numel()

    def visible(self) -> Tensor:
        """(B, rows, cols) bool: the mask this layout was built from."""
        visible = torch.zeros(self.grid, dtype=torch.bool, device=self.batch.device)
        visible[self.batch, self.row, self.col] = True
        return visible

    def coarsen(self, factor: int) -> TileLayout:
        """The layout of cells `factor` patches wide, a cell visible where any of its patches is."""
        if factor == 1:
            return self
        key = ("coarsen", factor)
        if key not in self.cache:
            b, rows, cols = self.grid
            if rows % factor or cols % factor:
                raise ValueError(f"a {rows}×{cols} patch grid does not divide into cells of {factor}×{factor} patches: "
                                 "the image size must be a multiple of the network's total stride")
            cells = self.visible().view(b, rows // factor, factor, cols // factor, factor).any(4).any(2)
            self.cache[key] = TileLayout.from_mask(cells)
        return self.cache[key]

    def mask(self, tile: int) -> Tensor:
        """(B, 1, rows * tile, cols * tile) float mask of visible positions at a stage."""
        return self.visible().float().repeat_interleave(tile, 1).repeat_interleave(tile, 2).unsqueeze(1)

    def mask_at(self, height: int) -> Tensor:
        """(B, 1, height, width) float mask of the active positions of a feature map `height` high,
        finer than the patch grid or coarser (then active where any patch of a cell is visible)."""
        rows = self.grid[1]
        if height >= rows:
            return self.mask(height // rows)
        return self.coarsen(rows // height).mask(1)


def _blocks(dense: Tensor, tile: int) -> Tensor:
    """(B, C, rows * t, cols * t) viewed as (B, C, rows, t, cols, t): tile (b, r, c) is [b, :, r, :, c, :]."""
    b, channels, height, width = dense.shape
    return dense.reshape(b, channels, height // tile, tile, width // tile, tile)


def gather_tiles(dense: Tensor, layout: TileLayout, tile: int) -> Tensor:
    """(B, C, rows * t, cols * t) -> (N, C, t, t): the visible tiles."""
    return _blocks(dense, tile)[layout.batch, :, layout.row, :, layout.col, :]


def scatter_tiles(tiles: Tensor, layout: TileLayout, fill: Tensor | float = 0.0) -> Tensor:
    """(N, C, t, t) -> (B, C, rows * t, cols * t), masked positions `fill` (a number, or a
    (C,) tensor such as SparK's learned mask token, which then receives its gradient)."""
    _, channels, tile, _ = tiles.shape
    b, grid_rows, grid_cols = layout.grid
    shape = (b, channels, grid_rows * tile, grid_cols * tile)
    if isinstance(fill, Tensor):
        dense = fill.to(tiles.dtype)[None, :, None, None].expand(shape).contiguous()
    else:
        dense = tiles.new_full(shape, fill)
    _blocks(dense, tile)[layout.batch, :, layout.row, :, layout.col, :] = tiles
    return dense


def _map_indices(layout: TileLayout, tile: int, length: int, before: int) -> tuple[tuple[int, int], Tensor, Tensor]:
    """For halo windows: the (height, width) of the padded map, the image drawn `before` positions
    in, and flat row indices into its (B * height * width) positions of every tile position and
    every window position, tile by tile, row-major inside. Built once per layout."""
    key = ("windows", tile, length, before)
    if key not in layout.cache:
        b, grid_rows, grid_cols = layout.grid
        # Windows start every `tile` positions; the map must also hold the whole image at `before`.
        height = max((grid_rows - 1) * tile + length, before + grid_rows * tile)
        width = max((grid_cols - 1) * tile + length, before + grid_cols * tile)

        def flat(offset: int, size: int) -> Tensor:
            steps = torch.arange(size, device=layout.batch.device)
            ys = (layout.row[:, None] * tile + offset + steps)[:, :, None]
            xs = (layout.col[:, None] * tile + offset + steps)[:, None, :]
            return ((layout.batch[:, None, None] * height + ys) * width + xs).reshape(-1)

        layout.cache[key] = (height, width), flat(before, tile), flat(0, length)
    return layout.cache[key]


class _Windows(torch.autograd.Function):
    """Each visible tile's input window with its halo: `length` positions from `before` above and
    left of the tile's corner, read from the zero-filled map with `pad_value` beyond the image.
    The map is channels-last, so tiles and windows move as rows of C contiguous values; backward
    adds the overlapping windows' gradients back into the map with index_add_. The index tables
    come from the caller: torch.compile cannot trace the layout's cache filled in here."""

    @staticmethod
    def forward(ctx, tiles: Tensor, layout: TileLayout, tile_rows: Tensor, window_rows: Tensor,
                map_size: tuple[int, int], length: int, before: int, pad_value: float) -> Tensor:
        n, channels, tile, _ = tiles.shape
        (height, width), (b, grid_rows, grid_cols) = map_size, layout.grid
        padded = tiles.new_full((b, height, width, channels), pad_value)
        if pad_value != 0:
            padded[:, before:before + grid_rows * tile, before:before + grid_cols * tile] = 0
        flat = padded.view(-1, channels)
        flat[tile_rows] = tiles.permute(0, 2, 3, 1).reshape(-1, channels)
        ctx.save_for_backward(tile_rows, window_rows)
        ctx.sizes = (tile, b * height * width)
        return flat[window_rows].view(n, length, length, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        tile_rows, window_rows = ctx.saved_tensors
        tile, positions = ctx.sizes
        n, channels, length, _ = grad.shape
        flat = grad.new_zeros(positions, channels)
        flat.index_add_(0, window_rows, grad.permute(0, 2, 3, 1).reshape(-1, channels))
        grad_tiles = flat[tile_rows].view(n, tile, tile, channels).permute(0, 3, 1, 2)
        return grad_tiles, None, None, None, None, None, None, None


def tile_windows(tiles: Tensor, layout: TileLayout, length: int, before: int, pad_value: float = 0.0) -> Tensor:
    """(N, C, t, t) -> (N, C, length, length): the input window each tile's output reads."""
    map_size, tile_rows, window_rows = _map_indices(layout, tiles.shape[-1], length, before)
    return _Windows.apply(tiles, layout, tile_rows, window_rows, map_size, length, before, pad_value)
