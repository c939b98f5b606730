"""Invariant readouts: node features -> per-atom scalar energies."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from ._linear import ElementLinear
from ._mlp import ScalarMLP


class LinearReadout(nn.Module):
    """Linear map of the scalar channels to one per-atom energy. (N, irreps_in.dim) -> (N,)."""

    def __init__(self, irreps_in):
        super().__init__()
        self.linear = ElementLinear(o3.Irreps(irreps_in), o3.Irreps("0e"), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class MLPReadout(nn.Module):
    """Scalars -> hidden (SiLU) -> one per-atom energy. (N, irreps_in.dim) -> (N,)."""

    def __init__(self, irreps_in, hidden: int = 16):
        super().__init__()
        irreps_in = o3.Irreps(irreps_in)
        self.num_scalars = sum(mul for mul, ir in irreps_in if ir == o3.Irrep("0e"))
        if [ir for _, ir in irreps_in][:1] != [o3.Irrep("0e")] or irreps_in.count("0e") != irreps_in[0].mul:
            raise ValueError(f"MLPReadout needs the scalars first, in one block: {irreps_in}")
        self.mlp = ScalarMLP([self.num_scalars, hidden, 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x[:, : self.num_scalars]).squeeze(-1)
