"""An ensemble of trained detectors sharing one input policy: the mean of their logits.

Independently trained networks make partly independent mistakes, so their mean is more accurate
than either; the price is one forward pass per member. Built from bundles by `realjudge.train.stacking`.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import DetectorNet
from .registry import architecture_only, create_model, register_model


class Ensemble(DetectorNet):
    def __init__(self, members: list[dict]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        for m in members:
            if not isinstance(m, dict) or "arch" not in m:
                raise ValueError("each member must be {'arch': NAME, 'arch_kwargs': {...}}")
            if m["arch"] == "ensemble":
                raise ValueError("members cannot be ensembles themselves")
        # Members always receive trained weights (from a bundle), so no pretrained initialisation is loaded.
        self.members = nn.ModuleList(create_model(m["arch"], **architecture_only(m["arch"], m.get("arch_kwargs", {})))
                                     for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)

    @property
    def cam_layers(self) -> list[nn.Module]:
        """Grad-CAM sums the maps of every member's layer: each member's share of the mean logit."""
        return [m.cam_layer for m in self.members if hasattr(m, "cam_layer")]


@register_model("ensemble")
def ensemble(members: list[dict]) -> Ensemble:
    """Mean logit of several trained detectors with one input policy (built with `realjudge ensemble`)."""
    return Ensemble(members)
