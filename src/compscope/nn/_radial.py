"""Radial embeddings of edge lengths: Bessel basis times a smooth polynomial cutoff."""

from __future__ import annotations

import math

import torch
from torch import nn


class BesselBasis(nn.Module):
    r"""Radial Bessel functions :math:`\sqrt{2/r_c}\,\sin(n\pi r/r_c)/r` (DimeNet, Klicpera et al. 2020, eq. 7).

    Args:
        r_max: cutoff radius :math:`r_c` in Å.
        num_basis: number of functions ``n = 1..num_basis``.
        trainable: learn the frequencies (initialised at :math:`n\pi/r_c`).

    Shapes:
        input (E,) lengths in Å -> output (E, num_basis).
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / r_max
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)
        self.r_max = float(r_max)
        self.prefactor = math.sqrt(2.0 / r_max)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)  # (E, 1)
        return self.prefactor * torch.sin(self.freqs * r) / r  # (E, num_basis)


class PolynomialCutoff(nn.Module):
    r"""Smooth envelope :math:`u(r)` going to zero at :math:`r_c` with ``p`` continuous derivatives.

    :math:`u(x) = 1 - \frac{(p+1)(p+2)}{2}x^p + p(p+2)x^{p+1} - \frac{p(p+1)}{2}x^{p+2}` for
    :math:`x = r/r_c < 1` and 0 beyond (Klicpera et al. 2020, eq. 8). Edges with :math:`r \ge r_c`
    contribute exactly zero, so neighbour lists may use a larger radius (Verlet skin).
    """

    def __init__(self, r_max: float, p: int = 6):
        super().__init__()
        self.r_max = float(r_max)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.r_max
        env = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * x.pow(p)
            + p * (p + 2.0) * x.pow(p + 1.0)
            - p * (p + 1.0) / 2.0 * x.pow(p + 2.0)
        )
        return env * (x < 1.0).to(r.dtype)


class RadialEmbedding(nn.Module):
    """Bessel basis x polynomial cutoff: (E,) lengths -> (E, num_basis) features, zero beyond ``r_max``."""

    def __init__(self, r_max: float, num_basis: int = 8, p: int = 6, trainable: bool = False):
        super().__init__()
        self.basis = BesselBasis(r_max, num_basis, trainable)
        self.cutoff = PolynomialCutoff(r_max, p)
        self.out_dim = num_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) * self.cutoff(r).unsqueeze(-1)  # (E, num_basis)
