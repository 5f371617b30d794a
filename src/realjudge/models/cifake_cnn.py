"""The CIFAKE paper's family: conv blocks (3x3 conv, ReLU, 2x2 max-pool), dense layers, one logit."""

from __future__ import annotations

import torch
from torch import nn

from ..preprocess import InputPolicy
from .base import DetectorNet
from .registry import register_model

CONV_STAGE = [(n, f) for n in (1, 2, 3) for f in (16, 32, 64, 128)]
DENSE_UNITS = (32, 64, 128, 256, 512, 1024, 2048, 4096)


class CifakeCNN(DetectorNet):
    def __init__(self, n_conv: int = 2, filters: int = 32, n_dense: int = 1, units: int = 64, input_size: int = 32):
        super().__init__()
        if not 1 <= n_conv <= 5 or input_size >> n_conv < 1:
            raise ValueError(f"n_conv must be 1..5 and leave at least 1 pixel, got {n_conv}")
        if filters < 1 or units < 1 or n_dense < 0:
            raise ValueError("filters and units must be positive, n_dense >= 0")
        layers: list[nn.Module] = []
        c = 3
        for _ in range(n_conv):
            layers += [nn.Conv2d(c, filters, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = filters
        self.features = nn.Sequential(*layers)
        flat = filters * (input_size >> n_conv) ** 2
        dense: list[nn.Module] = [nn.Flatten()]
        for _ in range(n_dense):
            dense += [nn.Linear(flat, units), nn.ReLU(inplace=True)]
            flat = units
        self.head = nn.Sequential(*dense)
        self.out = nn.Linear(flat, 1)
        self.config = dict(n_conv=n_conv, filters=filters, n_dense=n_dense, units=units, input_size=input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.head(self.features(x))).squeeze(1)

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolution: Grad-CAM reads its activations."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)][-1]


@register_model("cifake-cnn", InputPolicy(kind="resize", size=32, filter="bicubic"))
def cifake_cnn(n_conv: int = 2, filters: int = 32, n_dense: int = 1, units: int = 64, input_size: int = 32) -> CifakeCNN:
    """The CIFAKE paper's CNN (best of its 36 topologies: 2 x 32-filter convs, one dense layer of 64)."""
    return CifakeCNN(n_conv, filters, n_dense, units, input_size)
