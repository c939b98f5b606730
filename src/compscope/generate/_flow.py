"""Equivariant flow matching for molecules: a faster-to-sample alternative to EDM.

Conditional flow matching (Lipman et al., ICLR 2023) on the same joint space as EDM (CoM-free positions +
normalised one-hot/charge features), with the straight path ``z_t = (1 - t) z_0 + t z_1`` from CoM-free
Gaussian noise ``z_0`` to data ``z_1`` and the constant target velocity ``z_1 - z_0`` (EquiFM, Song et al.,
NeurIPS 2023; equivariant flow matching, Klein et al., NeurIPS 2023). The EGNN velocity field is
E(3)-equivariant, so the pushed-forward density is E(3)-invariant. Sampling integrates the ODE with a
few Euler steps (default 50) instead of EDM's 1000 stochastic ones. The path, time grid and ODE solver are the
shared continuous-flow core of :mod:`compscope.nn` (also used by the Boltzmann generators of ``sampling``).
"""

from __future__ import annotations

import torch

from compscope.nn import ode_solve, straight_path, time_grid

from ._batch import MolBatch, com_free_noise
from ._model import MoleculeGenerator


class FlowMatching(MoleculeGenerator):
    """Equivariant flow matching generator.

    Args:
        sample_steps: Euler steps from noise (t = 0) to data (t = 1).
        time_power: sampling grid ``t_k = (k / K)^(1/p)``: ``p > 1`` puts more steps near the data end,
            where bonds are decided.
        **kwargs: see :class:`MoleculeGenerator`.
    """

    def __init__(self, sample_steps: int = 50, time_power: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.sample_steps = sample_steps
        self.time_power = time_power

    def loss(self, mb: MolBatch) -> torch.Tensor:
        x1, h1 = self.encode(mb)
        t = torch.rand(mb.num_graphs, dtype=x1.dtype, device=x1.device)  # (G,)
        x0 = com_free_noise(mb.batch, mb.num_graphs, x1)
        h0 = torch.randn_like(h1)
        tn = t[mb.batch, None]
        (xt, ux), (ht, uh) = straight_path(x0, x1, tn), straight_path(h0, h1, tn)
        vx, vh = self.dynamics(xt, ht, t, mb, self.context_of(mb))
        err = ((vx - ux) ** 2).sum(-1) + ((vh - uh) ** 2).sum(-1)  # (N,)
        per_mol = torch.zeros(mb.num_graphs, dtype=err.dtype, device=err.device).index_add(0, mb.batch, err)
        return (per_mol / (mb.n_atoms.to(err.dtype) * (3 + h1.shape[1]))).mean()

    @torch.no_grad()
    def sample_batch(self, mb: MolBatch, generator: torch.Generator | None = None) -> MolBatch:
        dtype = next(self.parameters()).dtype
        g = mb.num_graphs
        ctx = self.context_of(mb)
        z_x = com_free_noise(mb.batch, g, torch.empty(0, dtype=dtype, device=mb.batch.device))
        z_h = torch.randn(len(mb.batch), 6, dtype=dtype, device=z_x.device)
        grid = time_grid(self.sample_steps, power=self.time_power, dtype=dtype)
        z_x, z_h = ode_solve(lambda t, z: self.dynamics(z[0], z[1], t.expand(g), mb, ctx), (z_x, z_h), grid,
                             "euler")
        mb.x, mb.types = z_x, self.decode(z_h)
        return mb
