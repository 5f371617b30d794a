"""CNNSpot baseline (Wang et al., CVPR 2020): a plain CNN classifier whose strength is its training
augmentation (Gaussian blur + JPEG re-compression, applied alike to both classes).

The paper fine-tunes an ImageNet ResNet-50; here the ImageNet network is EfficientNet-Lite0 (the
weights that ship offline), or a small ResNet from scratch (`backbone="resnet"`). The augmentation
lives in the training config (`augment: ["hflip", "blur", "jpeg"]`, see configs/cnnspot.json),
because the engine applies augmentation to pixels before they reach any model.
"""

from __future__ import annotations

from torch import nn

from .efficientnet import EFFNET_POLICY, EffNetClassifier
from .registry import register_model
from .resnet import SmallResNet


@register_model("cnnspot", EFFNET_POLICY)
def cnnspot(backbone: str = "effnet", pretrained: bool = True, blocks: int = 16, widths=(32, 64, 128),
            dropout: float = 0.2) -> nn.Module:
    """CNNSpot baseline: ImageNet CNN (EfficientNet-Lite0) or a small ResNet; train with blur + JPEG augmentation."""
    if backbone == "effnet":
        return EffNetClassifier(blocks, pretrained, dropout)
    if backbone == "resnet":
        return SmallResNet(widths, (2,) * len(widths), (1,) + (2,) * (len(widths) - 1), dropout)
    raise ValueError(f"backbone must be 'effnet' or 'resnet', got {backbone!r}")
