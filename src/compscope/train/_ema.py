"""Exponential moving average of model weights (evaluated and exported instead of the raw weights)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    r"""Keeps :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta` after every optimiser step.

    Warm-up as in TensorFlow's ExponentialMovingAverage: the effective decay is
    :math:`\min(d, (1+n)/(10+n))` after ``n`` updates, so early averages are not dominated by the random init.
    The averaged copy is a sub-module, so it is saved in checkpoints with the model.
    """

    def __init__(self, model: nn.Module, decay: float = 0.99):
        super().__init__()
        self.decay = float(decay)
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        n = float(self.num_updates)
        d = min(self.decay, (1.0 + n) / (10.0 + n))
        for ema_p, p in zip(self.module.parameters(), model.parameters()):
            ema_p.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for ema_b, b in zip(self.module.buffers(), model.buffers()):
            ema_b.copy_(b)
