"""SparK's light UNet decoder: from the deepest scale up to the image, ×2 per block, adding the
densified feature map of each scale it reaches. Width halves per block from `width` (SparK: 768);
the cost is dominated by the first blocks, so it scales with width² (see BENCHMARKS.md for the
measured steps that set cxrfast's lighter default)."""

from __future__ import annotations

from torch import Tensor, nn


class UpBlock(nn.Sequential):
    """×2 transposed convolution, then two 3×3 convolutions with BN and ReLU6 (SparK's UNetBlock
    shape), `width_in` -> `width_out`."""

    def __init__(self, width_in: int, width_out: int):
        super().__init__(
            nn.ConvTranspose2d(width_in, width_in, kernel_size=4, stride=2, padding=1),
            nn.Conv2d(width_in, width_in, 3, padding=1, bias=False), nn.BatchNorm2d(width_in), nn.ReLU6(inplace=True),
            nn.Conv2d(width_in, width_out, 3, padding=1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU6(inplace=True),
        )


class LightDecoder(nn.Module):
    """`upsamples` blocks from stride 2^upsamples to 1; `widths()[i]` is the width entering block i,
    which is also what the i-th deepest scale's features are projected to."""

    def __init__(self, width: int, upsamples: int, out_channels: int = 1):
        super().__init__()
        if width < 2**upsamples:
            raise ValueError(f"decoder width {width} cannot halve {upsamples} times")
        self.width, self.upsamples = width, upsamples
        widths = self.widths()
        self.blocks = nn.ModuleList(UpBlock(widths[i], widths[i + 1]) for i in range(upsamples))
        self.head = nn.Conv2d(widths[-1], out_channels, kernel_size=1)

    def widths(self) -> list[int]:
        return [self.width >> i for i in range(self.upsamples + 1)]

    def forward(self, scales: list[Tensor]) -> Tensor:
        """`scales`: projected feature maps, deepest first, each twice the previous resolution."""
        x = scales[0]
        for i, block in enumerate(self.blocks):
            if 0 < i < len(scales):
                x = x + scales[i]
            x = block(x)
        return self.head(x)
