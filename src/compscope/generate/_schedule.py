"""EDM's polynomial noise schedule (Hoogeboom et al. 2022, App. B), as a lookup table of gamma(t)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def polynomial_alphas2(timesteps: int, s: float = 1e-5, power: float = 2.0) -> np.ndarray:
    """``alpha_t^2 = (1 - (t/T)^power)^2``, step ratios clipped at 1e-3, then squeezed to ``[s, 1 - s]``.

    Returns ``(T + 1,)`` values for ``t = 0 .. T``.
    """
    steps = timesteps + 1
    t = np.linspace(0, steps, steps)
    a2 = (1 - np.power(t / steps, power)) ** 2
    ratios = np.clip(a2 / np.concatenate([[1.0], a2[:-1]]), 1e-3, 1.0)  # clip alpha_t^2 / alpha_{t-1}^2
    a2 = np.cumprod(ratios)
    return (1 - 2 * s) * a2 + s


class PolynomialSchedule(nn.Module):
    """``gamma(t) = -log(alpha_t^2 / sigma_t^2)`` with ``alpha_t^2 + sigma_t^2 = 1`` (variance preserving).

    ``alpha_t = sqrt(sigmoid(-gamma))``, ``sigma_t = sqrt(sigmoid(gamma))`` (EDM eqs. 2-3).
    """

    def __init__(self, timesteps: int = 1000, precision: float = 1e-5, power: float = 2.0):
        super().__init__()
        self.timesteps = timesteps
        a2 = polynomial_alphas2(timesteps, precision, power)
        gamma = -(np.log(a2) - np.log(1 - a2))
        self.register_buffer("gamma_table", torch.tensor(gamma, dtype=torch.float64), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """gamma at continuous ``t`` in [0, 1] (rounded to the grid ``k / T``); same shape and dtype as ``t``."""
        idx = torch.round(t * self.timesteps).long().clamp(0, self.timesteps)
        return self.gamma_table.to(t.device)[idx].to(t.dtype)
