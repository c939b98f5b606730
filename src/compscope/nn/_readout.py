"""Invariant readouts: node features -> per-atom scalar energies."""

from __future__ import annotations

import torch
from e3nn import nn as enn
from e3nn import o3
from torch import nn


class LinearReadout(nn.Module):
    """Linear map of the scalar channels to one per-atom energy. (N, irreps_in.dim) -> (N,)."""

    def __init__(self, irreps_in):
        super().__init__()
        self.linear = o3.Linear(o3.Irreps(irreps_in), o3.Irreps("0e"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class MLPReadout(nn.Module):
    """Scalars -> hidden (SiLU) -> one per-atom energy. (N, irreps_in.dim) -> (N,)."""

    def __init__(self, irreps_in, hidden: int = 16):
        super().__init__()
        self.linear1 = o3.Linear(o3.Irreps(irreps_in), o3.Irreps(f"{hidden}x0e"))
        self.act = enn.Activation(o3.Irreps(f"{hidden}x0e"), [torch.nn.functional.silu])
        self.linear2 = o3.Linear(o3.Irreps(f"{hidden}x0e"), o3.Irreps("0e"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.act(self.linear1(x))).squeeze(-1)
