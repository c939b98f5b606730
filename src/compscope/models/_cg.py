"""Coarse-grained potentials: a physical prior plus an equivariant network over beads (CGnet / CGSchNet style).

``U(X) = U_prior(X) + U_net(X)`` over the beads of one molecule (Wang et al., ACS Cent. Sci. 5, 755 (2019); Husic
et al., J. Chem. Phys. 153, 194101 (2020)). The prior keeps simulations in the physical region where the network
has no data: harmonic bonds ``k_b/2 (r - r_0)^2`` and angles ``k_a/2 (theta - theta_0)^2``, a repulsion
``eps (sigma/r)^6`` between beads not joined by a bond or an angle, and optional dihedral Fourier series
``sum_n a_n cos(n phi) + b_n sin(n phi)``. Its parameters come from Boltzmann inversion of the mapped reference
data (:func:`compscope.cg.fit_prior`), so they are plain numbers here and the model is rebuilt from its constructor
arguments (model packages, :mod:`compscope.models.artifacts`). The network is the force-field network
(:class:`~compscope.models.EquivariantPotential`) with one embedding per bead position.

The model follows the force-field contract (``cutoff``, ``forward(graph) -> {energy, node_energy, forces}``), so
``compscope md run`` simulates it like any potential. A graph batch must hold whole copies of the molecule, beads
in map order; ``atomic_numbers`` are the elements of the beads' representative atoms (MD takes masses from them).

Shapes: graph positions (G * n_beads, 3) Å -> energy (G,) eV, forces (G * n_beads, 3) eV/Å.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from compscope.data import keys as K
from compscope.errors import ConfigError
from compscope.nn import potential_outputs

from ._forcefield import EquivariantPotential

__all__ = ["CGPrior", "CGPotential", "bond_lengths", "bond_angles", "dihedral_angles"]


def bond_lengths(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Distances (..., P) of bead pairs ``pairs`` (P, 2) in frames ``x`` (..., n, 3)."""
    return (x[..., pairs[:, 1], :] - x[..., pairs[:, 0], :]).norm(dim=-1)


def bond_angles(x: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
    """Angles (..., A) in radians at the middle bead of each triple (A, 3)."""
    a = x[..., triples[:, 0], :] - x[..., triples[:, 1], :]
    b = x[..., triples[:, 2], :] - x[..., triples[:, 1], :]
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    # atan2 form: finite gradients at 0 and pi, where acos has none
    sin = torch.linalg.cross(a, b, dim=-1).norm(dim=-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.atan2(sin, cos)


def dihedral_angles(x: torch.Tensor, quads: torch.Tensor) -> torch.Tensor:
    """Dihedral angles (..., D) in (-pi, pi] of bead quadruples (D, 4) (IUPAC sign, as ``analysis.dihedral_angles``)."""
    p0, p1, p2, p3 = (x[..., quads[:, i], :] for i in range(4))
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / b1.norm(dim=-1, keepdim=True)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    return torch.atan2((torch.linalg.cross(b1n, v, dim=-1) * w).sum(-1), (v * w).sum(-1))


def _index(rows, width: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(rows if rows else [], dtype=torch.long).reshape(-1, width)
    if t.numel() and t.min() < 0:
        raise ConfigError(f"prior {name}: negative bead index")
    return t


class CGPrior(nn.Module):
    """Prior energy of a CG molecule (eV) from fitted parameters (see the module docstring).

    Args:
        n_beads: beads in the molecule.
        bonds, bond_r0, bond_k: (P, 2) bead pairs, Å, eV/Å^2.
        angles, angle_theta0, angle_k: (A, 3) triples (middle bead at the vertex), rad, eV/rad^2.
        repulsion_pairs, repulsion_sigma, repulsion_epsilon: (R, 2) pairs, Å, eV.
        dihedrals, dihedral_cos, dihedral_sin: (D, 4) quadruples and (D, M) Fourier coefficients (eV) of
            ``cos(n phi)``, ``sin(n phi)`` for ``n = 1..M``.
    """

    def __init__(self, n_beads: int, bonds: Sequence = (), bond_r0: Sequence = (), bond_k: Sequence = (),
                 angles: Sequence = (), angle_theta0: Sequence = (), angle_k: Sequence = (),
                 repulsion_pairs: Sequence = (), repulsion_sigma: Sequence = (), repulsion_epsilon: Sequence = (),
                 dihedrals: Sequence = (), dihedral_cos: Sequence = (), dihedral_sin: Sequence = ()):
        super().__init__()
        self.n_beads = int(n_beads)
        for name, rows, width in (("bonds", bonds, 2), ("angles", angles, 3), ("repulsion_pairs", repulsion_pairs, 2),
                                  ("dihedrals", dihedrals, 4)):
            idx = _index(list(rows), width, name)
            if idx.numel() and idx.max() >= self.n_beads:
                raise ConfigError(f"prior {name} name bead {int(idx.max())} but the molecule has {n_beads} beads")
            self.register_buffer(name, idx)
        dt = torch.get_default_dtype()
        for name, vals, n in (("bond_r0", bond_r0, len(self.bonds)), ("bond_k", bond_k, len(self.bonds)),
                              ("angle_theta0", angle_theta0, len(self.angles)), ("angle_k", angle_k, len(self.angles)),
                              ("repulsion_sigma", repulsion_sigma, len(self.repulsion_pairs)),
                              ("repulsion_epsilon", repulsion_epsilon, len(self.repulsion_pairs))):
            t = torch.as_tensor(list(vals), dtype=dt).reshape(-1)
            if len(t) != n:
                raise ConfigError(f"prior {name} has {len(t)} values for {n} terms")
            self.register_buffer(name, t)
        m = len(dihedral_cos[0]) if len(dihedral_cos) else 0
        for name, vals in (("dihedral_cos", dihedral_cos), ("dihedral_sin", dihedral_sin)):
            t = torch.as_tensor([list(r) for r in vals], dtype=dt).reshape(len(self.dihedrals), m)
            self.register_buffer(name, t)

    def term_energies(self, x: torch.Tensor) -> torch.Tensor:
        """Energy (G, n_beads) of frames ``x`` (G, n_beads, 3), each term credited to its first bead."""
        e = x.new_zeros(x.shape[:-1])  # (G, n)
        if len(self.bonds):
            r = bond_lengths(x, self.bonds)  # (G, P)
            e = e.index_add(1, self.bonds[:, 0], 0.5 * self.bond_k * (r - self.bond_r0) ** 2)
        if len(self.angles):
            th = bond_angles(x, self.angles)
            e = e.index_add(1, self.angles[:, 0], 0.5 * self.angle_k * (th - self.angle_theta0) ** 2)
        if len(self.repulsion_pairs):
            r = bond_lengths(x, self.repulsion_pairs)
            e = e.index_add(1, self.repulsion_pairs[:, 0], self.repulsion_epsilon * (self.repulsion_sigma / r) ** 6)
        if len(self.dihedrals) and self.dihedral_cos.shape[1]:
            phi = dihedral_angles(x, self.dihedrals)  # (G, D)
            n = torch.arange(1, self.dihedral_cos.shape[1] + 1, dtype=x.dtype, device=x.device)
            nphi = phi[..., None] * n  # (G, D, M)
            ed = (self.dihedral_cos * torch.cos(nphi) + self.dihedral_sin * torch.sin(nphi)).sum(-1)
            e = e.index_add(1, self.dihedrals[:, 0], ed)
        return e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prior energy (G,) of frames (G, n_beads, 3)."""
        return self.term_energies(x).sum(-1)


class CGPotential(nn.Module):
    """A CG potential under the force-field contract: :class:`CGPrior` plus an equivariant network (optional).

    Args:
        bead_z: element of each bead's representative atom (n_beads,) (MD masses and input checks).
        prior: :class:`CGPrior` arguments (``n_beads`` filled in), or None for no prior.
        net: :class:`~compscope.models.EquivariantPotential` arguments except ``species`` (one type per bead
            position), or None for a prior-only model.
        energy_scale: the network's energies are multiplied by this (eV; kT is a natural unit).
    """

    def __init__(self, bead_z: Sequence[int], prior: dict[str, Any] | None = None,
                 net: dict[str, Any] | None = None, energy_scale: float = 1.0):
        super().__init__()
        self.atomic_numbers = [int(z) for z in bead_z]
        self.n_beads = len(self.atomic_numbers)
        if self.n_beads < 1:
            raise ConfigError("a CG potential needs at least one bead")
        self.prior = CGPrior(self.n_beads, **(prior or {}))
        self.net = None
        self.energy_scale = float(energy_scale)
        cutoff = 0.0
        if net is not None:
            args = dict(net)
            if "species" in args:
                raise ConfigError("net.species is set by the CG potential (one type per bead)")
            args.setdefault("isolated_e0", False)
            self.net = EquivariantPotential(species=list(range(1, self.n_beads + 1)), **args)
            cutoff = self.net.cutoff
        # the MD neighbour list radius: the network's cutoff (the prior's terms need no edges)
        self.cutoff = float(cutoff) if cutoff > 0 else 1.0

    def _local_index(self, graph) -> torch.Tensor:
        n = graph.positions.shape[0]
        if n % self.n_beads or graph.num_graphs * self.n_beads != n:
            raise ConfigError(f"a CG batch must hold whole molecules of {self.n_beads} beads, got {n} beads in "
                              f"{graph.num_graphs} structures")
        return torch.arange(n, device=graph.positions.device) % self.n_beads

    def node_energies(self, positions: torch.Tensor, graph, edge_cell: torch.Tensor) -> torch.Tensor:
        """Per-bead energies (N,) in eV: prior terms (credited to their first bead) plus the network's."""
        idx = self._local_index(graph)
        e = self.prior.term_energies(positions.view(-1, self.n_beads, 3)).reshape(-1)  # (N,)
        if self.net is not None:
            attrs = nn.functional.one_hot(idx, self.n_beads).to(positions.dtype)
            e = e + self.energy_scale * self.net.node_energies(
                positions, attrs, idx, graph.edge_index, graph.cell_shifts, edge_cell,
                fused=self.net.fused_kernels, include_e0=False)
        return e

    def forward(self, graph, compute_forces: bool = True, compute_stress: bool = False,
                training: bool = False) -> dict[str, torch.Tensor]:
        return potential_outputs(lambda pos, edge_cell: self.node_energies(pos, graph, edge_cell), graph,
                                 compute_forces, compute_stress, training)

    def energy_forces(self, x: torch.Tensor, training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies (B,) and forces (B, n_beads, 3) of bead frames ``x`` (B, n_beads, 3) (builds the graph)."""
        out = self.forward(self.make_graph(x), compute_forces=True, training=training)
        e, f = out[K.ENERGY], out[K.FORCES].view(x.shape)
        return (e, f) if training else (e.detach(), f.detach())

    def make_graph(self, x: torch.Tensor):
        """The :class:`~compscope.data.AtomicGraph` of bead frames ``x`` (B, n_beads, 3): every pair within the
        network's cutoff is an edge (none for a prior-only model)."""
        if x.ndim != 3 or x.shape[1:] != (self.n_beads, 3):
            raise ConfigError(f"CG frames must be (B, {self.n_beads}, 3), got {tuple(x.shape)}")
        return _graph_of(x, self.atomic_numbers, self.cutoff if self.net is not None else 0.0)


def _graph_of(x: torch.Tensor, bead_z: Sequence[int], cutoff: float):
    """An :class:`~compscope.data.AtomicGraph` of B molecules (B, n, 3) with every bead pair within ``cutoff``
    as an edge (molecules are small: all pairs, then masked by distance)."""
    from compscope.data import AtomicGraph

    b, n, _ = x.shape
    pos = x.reshape(b * n, 3)
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    off = ii != jj
    send, recv = ii[off], jj[off]  # (n(n-1),)
    base = (torch.arange(b) * n)[:, None]
    send = (base + send).reshape(-1)
    recv = (base + recv).reshape(-1)
    if cutoff > 0:
        with torch.no_grad():
            keep = (pos[recv] - pos[send]).norm(dim=-1) < cutoff
        send, recv = send[keep], recv[keep]
    else:
        send, recv = send[:0], recv[:0]
    order = torch.argsort(recv, stable=True)
    edge_index = torch.stack([send[order], recv[order]])
    z = torch.as_tensor(list(bead_z), dtype=torch.long).repeat(b)
    return AtomicGraph(positions=pos, atomic_numbers=z, batch=torch.arange(b).repeat_interleave(n),
                       edge_index=edge_index, cell_shifts=torch.zeros(edge_index.shape[1], 3, dtype=x.dtype),
                       cell=torch.zeros(b, 3, 3, dtype=x.dtype), pbc=torch.zeros(b, 3, dtype=torch.bool),
                       cutoff=float(cutoff))
