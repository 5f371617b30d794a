"""NPR baseline (Tan et al., CVPR 2024): neighbouring-pixel relationships into a truncated ResNet.

Up-sampling layers in generators copy or interpolate each value over a 2x2 neighbourhood, which
leaves correlations between neighbouring pixels that cameras do not make. The input is the residual
`x - up(down(x))` (nearest-neighbour, factor 2): the content cancels and only the local
relationships remain. The network is a small ResNet trained from scratch at native resolution
(crop policy: the input is never resized).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..preprocess import InputPolicy
from .base import DetectorNet
from .registry import register_model
from .resnet import SmallResNet

# 96-px patches: several per image at native resolution; padding for smaller images.
NATIVE_POLICY = InputPolicy(kind="crop", size=96, crops=5)


def npr_residual(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """x - up(down(x)) with nearest-neighbour resampling by `factor` (sizes not divisible are cropped)."""
    h, w = x.shape[-2:]
    h2, w2 = h - h % factor, w - w % factor
    x = x[..., :h2, :w2]
    down = x[..., ::factor, ::factor]
    up = F.interpolate(down, scale_factor=factor, mode="nearest")
    return x - up


class NPRNet(DetectorNet):
    """NPR residual (scaled so its spread is near 1) -> SmallResNet from scratch -> one logit."""

    def __init__(self, widths=(32, 64, 128), blocks=(1, 1, 1), strides=(2, 2, 2), factor: int = 2,
                 gain: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.factor, self.gain = int(factor), float(gain)
        self.net = SmallResNet(widths, blocks, strides, dropout)
        self.feature_dim = self.net.feature_dim

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return npr_residual(x, self.factor) * self.gain

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(self.residual(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.net.drop(self.features(x))).squeeze(1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.stages[-1]


@register_model("npr", NATIVE_POLICY)
def npr(widths=(32, 64, 128), blocks=(1, 1, 1), strides=(2, 2, 2), factor: int = 2, gain: float = 4.0,
        dropout: float = 0.0) -> NPRNet:
    """NPR baseline: neighbouring-pixel residual into a small from-scratch ResNet, native-resolution crops."""
    return NPRNet(widths, blocks, strides, factor, gain, dropout)
