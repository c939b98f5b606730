"""Gated nonlinearity for equivariant features (Weiler et al. 2018; e3nn ``Gate``)."""

from __future__ import annotations

import torch
from e3nn import nn as enn
from e3nn import o3


def gate_for(irreps_out) -> tuple[o3.Irreps, enn.Gate]:
    """A gate producing ``irreps_out`` and the irreps its input needs (scalars + gates + gated).

    Scalars go through SiLU; every non-scalar irrep is multiplied by a sigmoid of its own extra scalar.
    """
    irreps_out = o3.Irreps(irreps_out)
    scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
    gates = o3.Irreps([(m, "0e") for m, _ in gated])
    gate = enn.Gate(
        scalars, [torch.nn.functional.silu] * len(scalars),
        gates, [torch.sigmoid] * len(gates),
        gated,
    )
    return gate.irreps_in, gate
