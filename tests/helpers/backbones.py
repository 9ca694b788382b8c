"""Small CNNs with the exact layer structure of timm's ResNet (Bottleneck) and ConvNeXt, for the
sparse encoder's tests: stems, strided and depthwise convs, BatchNorm, channels-first and
channels-last LayerNorm, max pooling and residual adds, as those forwards compose them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1, expansion=4):
        super().__init__()
        width, out = planes, planes * expansion
        self.conv1, self.bn1 = nn.Conv2d(inplanes, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out)
        self.act = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        return self.act(x + shortcut)


class ResNet(nn.Module):
    def __init__(self, in_chans=1, widths=(8, 16, 24, 32), depths=(2, 2, 2, 2), stem=16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, stem, 7, 2, 3, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(stem), nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem
        for i, (planes, depth) in enumerate(zip(widths, depths)):
            blocks = [Bottleneck(inplanes, planes, 1 if i == 0 else 2)]
            blocks += [Bottleneck(planes * 4, planes) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes * 4

    def forward_features(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x).permute(0, 2, 3, 1)
        x = self.mlp(self.norm(x)) * self.gamma
        return x.permute(0, 3, 1, 2) + shortcut


class ConvNeXt(nn.Module):
    def __init__(self, in_chans=1, dims=(8, 16, 24, 32), depths=(2, 2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        stages = []
        for i, dim in enumerate(dims):
            down = nn.Identity() if i == 0 else nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6),
                                                              nn.Conv2d(dims[i - 1], dim, 2, 2))
            stages.append(nn.Sequential(down, *[ConvNeXtBlock(dim) for _ in range(depths[i])]))
        self.stages = nn.Sequential(*stages)

    def forward_features(self, x):
        return self.stages(self.stem(x))


STAGES = {ResNet: ["layer1", "layer2", "layer3", "layer4"], ConvNeXt: [f"stages.{i}" for i in range(4)]}


def resnet50(in_chans=1) -> ResNet:
    """ResNet-50's widths and depths (timm's resnet50 layout, no pretrained weights)."""
    return ResNet(in_chans, widths=(64, 128, 256, 512), depths=(3, 4, 6, 3), stem=64)


def convnext_tiny(in_chans=1) -> ConvNeXt:
    """ConvNeXt-T's widths and depths (timm's convnext_tiny layout)."""
    return ConvNeXt(in_chans, dims=(96, 192, 384, 768), depths=(3, 3, 9, 3))
