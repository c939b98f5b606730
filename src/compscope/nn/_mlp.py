"""A plain MLP for invariant inputs (radial features, readouts), e3nn-style normalised.

Weights are standard normal and each layer divides by ``sqrt(fan_in)``; hidden activations are scaled to unit
second moment (e3nn's ``normalize2mom``), so activations keep unit scale at initialisation, as in e3nn's
``FullyConnectedNet``. No biases: a radial MLP without bias maps zero radial features (edges beyond the cutoff)
to exactly zero weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from e3nn.math import normalize2mom
from torch import nn

__all__ = ["ScalarMLP"]


class ScalarMLP(nn.Module):
    """``dims[0] -> dims[1] -> ... -> dims[-1]`` with ``act`` between layers (not after the last).

    Shapes:
        x (..., dims[0]) -> (..., dims[-1])
    """

    def __init__(self, dims: Sequence[int], act: Callable = torch.nn.functional.silu):
        super().__init__()
        self.dims = [int(d) for d in dims]
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(a, b)) for a, b in zip(self.dims, self.dims[1:]))
        self.norms = [a ** -0.5 for a in self.dims[:-1]]
        self.act = act
        self.act_cst = float(normalize2mom(act).cst)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.norms) - 1
        for i, (w, norm) in enumerate(zip(self.weights, self.norms)):
            x = x @ (w * norm)
            if i < last:
                x = self.act(x) * self.act_cst
        return x
