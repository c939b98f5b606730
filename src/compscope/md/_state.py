"""MD state of a batch of replicas, kinetic energy, temperature and Maxwell-Boltzmann velocities.

Units (docs/conventions.md): positions Å, momenta amu·Å/t_ase, masses amu, energies eV, where
``t_ase = Å·sqrt(amu/eV) ≈ 10.18 fs`` is ASE's internal time unit (``ase.units.fs`` converts fs to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from ase import units

from compscope.data import AtomicGraph

from ._checks import MDInputError

__all__ = [
    "MDState", "kinetic_energy", "temperature", "degrees_of_freedom", "maxwell_boltzmann",
    "remove_com_momentum", "masses_of",
]


@dataclass
class MDState:
    """Everything that evolves during MD for G replicas batched in one graph.

    Shapes:
        graph.positions: (N, 3) Å; momenta: (N, 3) amu·Å/t_ase; masses: (N,) amu;
        forces: (N, 3) eV/Å; energy: (G,) eV; active: (G,) bool; ref_positions: (N, 3) Å
        (positions at the last neighbour-list build); thermostat: per-integrator tensors, (G, ...).

    Notes:
        A replica with ``active == False`` was stopped by a stability monitor: its momenta and forces are
        zero, so integrators leave it where it is while the others go on.
    """

    graph: AtomicGraph
    momenta: torch.Tensor
    masses: torch.Tensor
    forces: torch.Tensor
    energy: torch.Tensor
    active: torch.Tensor
    ref_positions: torch.Tensor
    step: int = 0
    thermostat: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def positions(self) -> torch.Tensor:  # (N, 3)
        return self.graph.positions

    @property
    def batch(self) -> torch.Tensor:  # (N,)
        return self.graph.batch

    @property
    def num_graphs(self) -> int:
        return self.graph.num_graphs

    def replace(self, **kw) -> MDState:
        return replace(self, **kw)


def masses_of(atomic_numbers: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard atomic masses (amu) from ASE for atomic numbers of shape (N,)."""
    from ase.data import atomic_masses

    return torch.as_tensor(atomic_masses[atomic_numbers.cpu().numpy()], dtype=dtype, device=atomic_numbers.device)


def _per_graph(values: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    out = torch.zeros((num_graphs, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add(0, batch, values)


def kinetic_energy(momenta: torch.Tensor, masses: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Kinetic energy per replica ``sum p^2 / 2m`` in eV, shape (G,)."""
    ke_atom = 0.5 * (momenta * momenta).sum(-1) / masses  # (N,)
    return _per_graph(ke_atom, batch, num_graphs)


def degrees_of_freedom(batch: torch.Tensor, num_graphs: int, removed_per_replica: int = 3) -> torch.Tensor:
    """``3 n_g - removed`` per replica, shape (G,); ``removed = 3`` when total momentum is conserved at zero."""
    n = torch.bincount(batch, minlength=num_graphs).to(torch.float64)
    return (3.0 * n - removed_per_replica).clamp_min(1.0)


def temperature(
    momenta: torch.Tensor, masses: torch.Tensor, batch: torch.Tensor, num_graphs: int, removed_per_replica: int = 3
) -> torch.Tensor:
    """Instantaneous temperature ``2 KE / (dof k_B)`` per replica in K, shape (G,)."""
    ke = kinetic_energy(momenta, masses, batch, num_graphs)
    dof = degrees_of_freedom(batch, num_graphs, removed_per_replica).to(ke.dtype)
    return 2.0 * ke / (dof * units.kB)


def remove_com_momentum(momenta: torch.Tensor, masses: torch.Tensor, batch: torch.Tensor, num_graphs: int):
    """Subtract each replica's centre-of-mass velocity so that its total momentum is zero. (N, 3) -> (N, 3)."""
    p_tot = _per_graph(momenta, batch, num_graphs)  # (G, 3)
    m_tot = _per_graph(masses, batch, num_graphs)  # (G,)
    v_com = p_tot / m_tot[:, None]
    return momenta - masses[:, None] * v_com[batch]


def maxwell_boltzmann(
    masses: torch.Tensor,
    batch: torch.Tensor,
    num_graphs: int,
    temperature_K: float | torch.Tensor,
    generator: torch.Generator | None = None,
    exact_temperature: bool = True,
) -> torch.Tensor:
    """Momenta drawn from the Maxwell-Boltzmann distribution, zero net momentum per replica.

    Args:
        masses: (N,) amu.
        batch: (N,) replica index of each atom.
        num_graphs: G.
        temperature_K: scalar or (G,) target temperatures in K.
        generator: torch RNG (reproducible runs).
        exact_temperature: rescale each replica to exactly ``temperature_K`` (with 3n-3 degrees of freedom).

    Returns:
        momenta of shape (N, 3) in amu·Å/t_ase.
    """
    t = torch.as_tensor(temperature_K, dtype=masses.dtype, device=masses.device).expand(num_graphs)
    if (t < 0).any():
        raise MDInputError(f"temperature must be >= 0 K, got {t.tolist()}")
    kT = (units.kB * t)[batch]  # (N,)
    noise = torch.randn(masses.shape[0], 3, generator=generator, dtype=masses.dtype, device=masses.device)
    p = noise * torch.sqrt(masses * kT)[:, None]
    p = remove_com_momentum(p, masses, batch, num_graphs)
    if exact_temperature:
        cur = temperature(p, masses, batch, num_graphs)
        scale = torch.where(cur > 0, torch.sqrt(t / cur.clamp_min(1e-300)), torch.zeros_like(cur))
        p = p * scale[batch][:, None]
    return p
