"""Gated nonlinearity for equivariant features (Weiler et al. 2018), the same map as e3nn's ``Gate``.

Scalars go through a normalised SiLU; every non-scalar channel is multiplied by a normalised sigmoid of its
own extra scalar (the gate). Activations are scaled to unit second moment under a standard normal input
(e3nn's ``normalize2mom``), so e3nn's ``Gate`` and this one give the same numbers (tested); this one is a
split, two activations, one broadcast multiply per gated irrep and a cat.
"""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from torch import nn

__all__ = ["Gate", "gate_for"]

_SILU = float(normalize2mom(torch.nn.functional.silu).cst)
_SIGMOID = float(normalize2mom(torch.sigmoid).cst)


class Gate(nn.Module):
    """Gate producing ``irreps_out``; its input is ``irreps_in`` = scalars + gates (one 0e per gated channel) + gated.

    Shapes:
        x (N, irreps_in.dim) -> (N, irreps_out.dim)
    """

    def __init__(self, irreps_out):
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
        if any(ir.p == -1 for _, ir in scalars):
            raise ValueError(f"odd scalars cannot go through SiLU: {scalars}")
        self.irreps_out = scalars + gated
        self.irreps_in = scalars + o3.Irreps([(m, "0e") for m, _ in gated]) + gated
        self.sizes = [scalars.dim, gated.num_irreps, gated.dim]
        self.gated_blocks = [(m, ir.dim) for m, ir in gated]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, g, v = x.split(self.sizes, dim=-1)
        s = torch.nn.functional.silu(s) * _SILU
        if not self.gated_blocks:
            return s
        g = torch.sigmoid(g) * _SIGMOID
        n = x.shape[0]
        if len(self.gated_blocks) == 1:
            mul, d = self.gated_blocks[0]
            return torch.cat([s, (v.view(n, mul, d) * g.unsqueeze(-1)).reshape(n, mul * d)], dim=-1)
        out = [s]
        gs = g.split([m for m, _ in self.gated_blocks], dim=-1)
        vs = v.split([m * d for m, d in self.gated_blocks], dim=-1)
        for (mul, d), gi, vi in zip(self.gated_blocks, gs, vs):
            out.append((vi.view(n, mul, d) * gi.unsqueeze(-1)).reshape(n, mul * d))
        return torch.cat(out, dim=-1)


def gate_for(irreps_out) -> tuple[o3.Irreps, Gate]:
    """A gate producing ``irreps_out`` and the irreps its input needs (scalars + gates + gated)."""
    gate = Gate(irreps_out)
    return gate.irreps_in, gate
