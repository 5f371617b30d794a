"""Weight averaging (EMA) of a model during training."""

from __future__ import annotations


class WeightAverage:
    """Exponential moving average of a model's state (weights and batch-norm statistics).

    The decay ramps up as (1 + t) / (10 + t) so that the first steps are not dominated by the
    random initialisation.
    """

    def __init__(self, model, decay: float):
        import copy

        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.steps = decay, 0

    def update(self, model) -> None:
        import torch

        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values()):
                if avg.dtype.is_floating_point:
                    avg.lerp_(cur, 1 - d)
                else:
                    avg.copy_(cur)
