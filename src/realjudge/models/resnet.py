"""Small ResNets trained from scratch for small images.

The stem keeps full resolution (no stride, no pooling): at 32x32 the generator's traces are a few
pixels wide, and the first downsampling would average them away.
"""

from __future__ import annotations

import torch
from torch import nn

from ..preprocess import InputPolicy
from .base import DetectorNet
from .registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + (x if self.short is None else self.short(x)))


class SmallResNet(DetectorNet):
    def __init__(self, widths=(32, 64, 128), blocks=(2, 2, 2), strides=(1, 2, 2), dropout: float = 0.0):
        super().__init__()
        widths, blocks, strides = tuple(widths), tuple(blocks), tuple(strides)
        if not (len(widths) == len(blocks) == len(strides)) or not widths:
            raise ValueError("widths, blocks and strides must have the same non-zero length")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages = []
        c = widths[0]
        for w, n, s in zip(widths, blocks, strides):
            for i in range(n):
                stages.append(BasicBlock(c, w, s if i == 0 else 1))
                c = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c, 1)
        self.feature_dim = c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x))).squeeze(1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.stages[-1]


@register_model("resnet", InputPolicy(kind="resize", size=32, filter="bicubic"))
def resnet(widths=(32, 64, 128), blocks=(2, 2, 2), strides=(1, 2, 2), dropout: float = 0.0) -> SmallResNet:
    """A small ResNet from scratch, full-resolution stem (the stronger 32x32 CIFAKE detector)."""
    return SmallResNet(widths, blocks, strides, dropout)
