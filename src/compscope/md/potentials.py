"""Analytic pair potentials under the compscope force-field contract (for tests and examples).

A potential is a :class:`torch.nn.Module` with ``cutoff`` (Å) and
``forward(graph, compute_forces=True, compute_stress=False) -> dict`` returning
``{keys.ENERGY: (G,) eV, keys.NODE_ENERGY: (N,) eV, keys.FORCES: (N, 3) eV/Å}`` (and ``keys.STRESS``
(G, 3, 3) eV/Å^3 on request). Edges longer than ``cutoff`` contribute exactly zero, so MD may hand over a graph
built with a larger radius (Verlet skin). Forces and stress come from autograd of the scalar energy in the one
helper every model uses, :func:`compscope.nn.potential_outputs` (through :func:`energy_forces_stress`).

The pair energies are multiplied by a C2 polynomial switch that goes from 1 at ``r_on`` to 0 at
``cutoff``, so energy and forces are smooth and NVE runs conserve energy to integrator accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from compscope.data import AtomicGraph
from compscope.errors import ConfigError
from compscope.nn import potential_outputs

__all__ = ["LennardJones", "Morse", "SumPotential", "energy_forces_stress", "pair_node_energies", "switch"]


def switch(r: torch.Tensor, r_on: float, r_off: float) -> torch.Tensor:
    """C2 switching function: 1 for ``r <= r_on``, 0 for ``r >= r_off``, ``1 - 10x^3 + 15x^4 - 6x^5`` between.

    Shapes:
        r: (E,) Å -> (E,)
    """
    x = ((r - r_on) / (r_off - r_on)).clamp(0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def pair_node_energies(
    graph: AtomicGraph,
    pair_energy: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    cutoff: float,
    positions: torch.Tensor,  # (N, 3), possibly strained
    edge_cell: torch.Tensor,  # (E, 3, 3) cell of each edge's structure, possibly strained
) -> torch.Tensor:
    """Per-atom energies (N,) of a pair potential: half of each pair energy goes to each of its two atoms.

    Every directed edge ``i -> j`` of the (full) neighbour list is one half of a pair, so the half of the edge
    is credited to its sender. ``pair_energy(r, z_sender, z_receiver) -> (E,)`` is in eV; pairs with
    ``r >= cutoff`` are masked to exactly zero.
    """
    send, recv = graph.edge_index
    vec = positions[recv] - positions[send] + torch.einsum("ei,eij->ej", graph.cell_shifts, edge_cell)  # (E, 3)
    r = vec.norm(dim=-1)  # (E,)
    inside = r < cutoff
    r_safe = torch.where(inside, r, torch.full_like(r, cutoff))  # no inf/NaN gradients from masked pairs
    e_pair = pair_energy(r_safe, graph.atomic_numbers[send], graph.atomic_numbers[recv])  # (E,)
    e_pair = torch.where(inside, e_pair, torch.zeros_like(e_pair))
    return torch.zeros_like(positions[:, 0]).index_add(0, send, 0.5 * e_pair)  # (N,)


def energy_forces_stress(
    graph: AtomicGraph,
    pair_energy: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    cutoff: float,
    compute_forces: bool = True,
    compute_stress: bool = False,
) -> dict[str, torch.Tensor]:
    """Energy of a pair potential over the directed edges of ``graph``, with forces and stress from the one
    autograd helper every model uses (:func:`compscope.nn.potential_outputs`).

    Args:
        graph: batch of G structures; every directed edge ``i -> j`` is one half of a pair.
        pair_energy: ``f(r, z_sender, z_receiver) -> (E,)`` pair energy in eV (before the cutoff mask).
        cutoff: pairs with ``r >= cutoff`` are masked to exactly zero.
        compute_forces: return ``-dE/dr`` per atom.
        compute_stress: return the ASE-convention stress ``(1/V) dE/d(strain)`` (periodic cells only).

    Returns:
        ``{ENERGY: (G,), NODE_ENERGY: (N,), FORCES: (N, 3), STRESS: (G, 3, 3)}`` (the last two when asked for).
    """
    return potential_outputs(
        lambda pos, edge_cell: pair_node_energies(graph, pair_energy, cutoff, pos, edge_cell),
        graph, compute_forces, compute_stress, training=False,
    )


class _PairPotential(torch.nn.Module):
    """Base: element-agnostic pair potential with a smooth cutoff; subclasses define ``pair``."""

    def __init__(self, cutoff: float, r_on: float | None, atomic_numbers: Sequence[int] | None):
        super().__init__()
        if cutoff <= 0:
            raise ConfigError(f"cutoff must be > 0 Å, got {cutoff}")
        self.cutoff = float(cutoff)
        self.r_on = float(0.8 * cutoff if r_on is None else r_on)
        if not 0 < self.r_on < self.cutoff:
            raise ConfigError(f"r_on must lie in (0, cutoff={cutoff}), got {self.r_on}")
        # elements this potential is meant for (None: any); MD checks start structures against it
        self.atomic_numbers = None if atomic_numbers is None else [int(z) for z in atomic_numbers]

    def pair(self, r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _switched(self, r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
        return self.pair(r, zi, zj) * switch(r, self.r_on, self.cutoff)

    def forward(
        self, graph: AtomicGraph, compute_forces: bool = True, compute_stress: bool = False
    ) -> dict[str, torch.Tensor]:
        return energy_forces_stress(graph, self._switched, self.cutoff, compute_forces, compute_stress)


class LennardJones(_PairPotential):
    """Lennard-Jones 12-6: ``E(r) = 4 eps ((sigma/r)^12 - (sigma/r)^6)``, smoothly switched off.

    Args:
        epsilon: well depth, eV (argon: 0.0104).
        sigma: zero crossing, Å (argon: 3.40).
        cutoff: Å; pairs beyond contribute exactly zero.
        r_on: start of the switch, Å (default ``0.8 * cutoff``).
        atomic_numbers: elements the potential is for (``None``: any).

    Examples:
        >>> pot = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=8.5)
        >>> pot.cutoff
        8.5
    """

    def __init__(
        self,
        epsilon: float = 0.0104,
        sigma: float = 3.4,
        cutoff: float = 8.5,
        r_on: float | None = None,
        atomic_numbers: Sequence[int] | None = None,
    ):
        super().__init__(cutoff, r_on, atomic_numbers)
        self.epsilon = float(epsilon)
        self.sigma = float(sigma)

    def pair(self, r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
        s6 = (self.sigma / r) ** 6
        return 4.0 * self.epsilon * (s6 * s6 - s6)


class Morse(_PairPotential):
    """Morse pair potential ``E(r) = D ((1 - exp(-a (r - r0)))^2 - 1)``, smoothly switched off.

    Args:
        D: well depth, eV.
        a: width parameter, 1/Å.
        r0: equilibrium distance, Å.
        cutoff: Å; pairs beyond contribute exactly zero.
        r_on: start of the switch, Å (default ``0.8 * cutoff``).
        atomic_numbers: elements the potential is for (``None``: any).
    """

    def __init__(
        self,
        D: float = 0.5,
        a: float = 1.5,
        r0: float = 1.5,
        cutoff: float = 5.0,
        r_on: float | None = None,
        atomic_numbers: Sequence[int] | None = None,
    ):
        super().__init__(cutoff, r_on, atomic_numbers)
        self.D, self.a, self.r0 = float(D), float(a), float(r0)

    def pair(self, r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
        x = 1.0 - torch.exp(-self.a * (r - self.r0))
        return self.D * (x * x - 1.0)


class SumPotential(torch.nn.Module):
    """Sum of potentials (e.g. Morse + Lennard-Jones); ``cutoff`` is the largest of theirs."""

    def __init__(self, potentials: Sequence[torch.nn.Module]):
        super().__init__()
        if not potentials:
            raise ConfigError("SumPotential needs at least one potential")
        self.terms = torch.nn.ModuleList(potentials)
        self.cutoff = max(float(p.cutoff) for p in potentials)
        zs = [getattr(p, "atomic_numbers", None) for p in potentials]
        known = [set(z) for z in zs if z is not None]
        self.atomic_numbers = sorted(set.intersection(*known)) if known else None

    def forward(
        self, graph: AtomicGraph, compute_forces: bool = True, compute_stress: bool = False
    ) -> dict[str, torch.Tensor]:
        outs = [p(graph, compute_forces, compute_stress) for p in self.terms]
        return {k: sum(o[k] for o in outs) for k in outs[0]}
