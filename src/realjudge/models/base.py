"""What the training engine asks of every model. Single-stage classifiers trained with BCE keep
these defaults; a two-stage model (NTF) overrides them, so that the engine never probes for one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DetectorNet(nn.Module):
    two_stage = False  # trains a self-supervised stage 1 on reals before stage 2 (set_stage, default_stage1_epochs)
    default_stage1_epochs = 0
    fuses_scores = False  # its score is a fusion of parts (fusion_parts) fitted on validation data (fit_fusion)

    def set_stage(self, stage: int) -> None:
        if stage != 2:
            raise ValueError(f"{type(self).__name__} trains in one stage")

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of a batch: binary cross-entropy on the logit, fake positive."""
        logits = self(x)
        return F.binary_cross_entropy_with_logits(logits, y), logits

    def loss_terms(self) -> dict[str, float]:
        """The named terms of the last `training_loss`, for the training log (none for plain BCE)."""
        return {}
