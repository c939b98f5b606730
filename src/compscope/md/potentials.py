"""Analytic pair potentials under the compscope force-field contract (for tests and examples).

A potential is a :class:`torch.nn.Module` with ``cutoff`` (Å) and
``forward(graph, compute_forces=True, compute_stress=False) -> dict`` returning
``{keys.ENERGY: (G,) eV, keys.FORCES: (N, 3) eV/Å}`` (and ``keys.STRESS`` (G, 3, 3) eV/Å^3 on request).
Edges longer than ``cutoff`` contribute exactly zero, so MD may hand over a graph built with a larger
radius (Verlet skin). Forces and stress come from autograd of the scalar energy in one helper,
:func:`energy_forces_stress`.

The pair energies are multiplied by a C2 polynomial switch that goes from 1 at ``r_on`` to 0 at
``cutoff``, so energy and forces are smooth and NVE runs conserve energy to integrator accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from compscope.data import AtomicGraph
from compscope.data import keys as K

__all__ = ["LennardJones", "Morse", "SumPotential", "energy_forces_stress", "switch"]


def switch(r: torch.Tensor, r_on: float, r_off: float) -> torch.Tensor:
    """C2 switching function: 1 for ``r <= r_on``, 0 for ``r >= r_off``, ``1 - 10x^3 + 15x^4 - 6x^5`` between.

    Shapes:
        r: (E,) Å -> (E,)
    """
    x = ((r - r_on) / (r_off - r_on)).clamp(0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def energy_forces_stress(
    graph: AtomicGraph,
    pair_energy: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    cutoff: float,
    compute_forces: bool = True,
    compute_stress: bool = False,
) -> dict[str, torch.Tensor]:
    """Total energy of a pair potential over the directed edges of ``graph``, with autograd forces/stress.

    Args:
        graph: batch of G structures; every directed edge ``i -> j`` is one half of a pair.
        pair_energy: ``f(r, z_sender, z_receiver) -> (E,)`` pair energy in eV (before the cutoff mask).
        cutoff: pairs with ``r >= cutoff`` are masked to exactly zero.
        compute_forces: return ``-dE/dr`` per atom.
        compute_stress: return the ASE-convention stress ``(1/V) sum_e r_e (x) dE/dr_e`` (periodic only).

    Returns:
        ``{ENERGY: (G,), FORCES: (N, 3), STRESS: (G, 3, 3)}`` (the last two when asked for).
    """
    pos = graph.positions
    need_grad = compute_forces or compute_stress
    if need_grad:
        pos = pos.detach().requires_grad_(True)
    vec = graph.edge_vectors(pos)  # (E, 3); an intermediate, so autograd can differentiate by it
    r = vec.norm(dim=-1)  # (E,)
    send, recv = graph.edge_index
    inside = r < cutoff
    r_safe = torch.where(inside, r, torch.full_like(r, cutoff))
    e_pair = pair_energy(r_safe, graph.atomic_numbers[send], graph.atomic_numbers[recv])  # (E,)
    e_pair = torch.where(inside, e_pair, torch.zeros_like(e_pair))
    energy = torch.zeros(graph.num_graphs, dtype=pos.dtype, device=pos.device)
    energy = energy.index_add(0, graph.batch[send], 0.5 * e_pair)  # each pair appears twice
    out = {K.ENERGY: energy.detach() if not need_grad else energy}
    if need_grad:
        grads = torch.autograd.grad(energy.sum(), [pos, vec] if compute_stress else [pos])
        if compute_forces:
            out[K.FORCES] = -grads[0]
        if compute_stress:
            dvec = grads[-1]  # (E, 3) dE/dvec
            virial = torch.einsum("ei,ej->eij", vec.detach(), dvec)  # (E, 3, 3)
            w = torch.zeros(graph.num_graphs, 3, 3, dtype=pos.dtype, device=pos.device)
            w = w.index_add(0, graph.batch[send], virial)
            vol = torch.linalg.det(graph.cell).abs().clamp_min(1e-12).to(pos.dtype)  # (G,)
            out[K.STRESS] = w / vol[:, None, None]
        out[K.ENERGY] = energy.detach()
    return out


class _PairPotential(torch.nn.Module):
    """Base: element-agnostic pair potential with a smooth cutoff; subclasses define ``pair``."""

    def __init__(self, cutoff: float, r_on: float | None, atomic_numbers: Sequence[int] | None):
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be > 0 Å, got {cutoff}")
        self.cutoff = float(cutoff)
        self.r_on = float(0.8 * cutoff if r_on is None else r_on)
        if not 0 < self.r_on < self.cutoff:
            raise ValueError(f"r_on must lie in (0, cutoff={cutoff}), got {self.r_on}")
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
            raise ValueError("SumPotential needs at least one potential")
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
