"""Coarse-grained potentials: a physical prior plus an equivariant network over beads (CGnet / CGSchNet style).

``U(X) = U_prior(X) + U_net(X)`` over the beads of one molecule (Wang et al., ACS Cent. Sci. 5, 755 (2019); Husic
et al., J. Chem. Phys. 153, 194101 (2020)). The prior keeps simulations in the physical region where the network
has no data: harmonic bonds ``k_b/2 (r - r_0)^2`` and angles ``k_a/2 (theta - theta_0)^2``, a repulsion
``eps (sigma/r)^6`` between beads not joined by a bond or an angle, and optional dihedral Fourier series
``sum_n a_n cos(n phi) + b_n sin(n phi)``, and optional two-dimensional torsion terms on a pair of dihedrals
(CMAP-like, as the (phi, psi) correction of CHARMM; MacKerell et al., J. Comput. Chem. 25, 1400 (2004)): a
two-dimensional periodic Fourier series ``sum_(m,n) a_mn cos(m phi + n psi) + b_mn sin(m phi + n psi)`` over a
half-plane of modes, smooth everywhere with exact analytic forces. Its parameters come from Boltzmann inversion of
the mapped reference data (:func:`compscope.cg.fit_prior`), so they are plain numbers here and the model is rebuilt
from its constructor arguments (model packages, :mod:`compscope.models.artifacts`). The network is the force-field
network (:class:`~compscope.models.EquivariantPotential`) with one embedding per bead position, or (and) a
CGnet-style MLP on internal coordinates (:class:`CGFeatureNet`), which costs microseconds per step for a few beads.

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

from compscope.errors import ConfigError
from compscope.nn import potential_outputs

from ._forcefield import EquivariantPotential

__all__ = ["CGPrior", "CGFeatureNet", "CGPotential", "bond_lengths", "bond_angles", "dihedral_angles"]


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
        cmap, cmap_modes, cmap_cos, cmap_sin: (C, 8) pairs of quadruples (phi from the first four beads, psi from
            the last four), (P, 2) integer modes ``(m, n)`` and (C, P) coefficients (eV) of ``cos(m phi + n psi)``,
            ``sin(m phi + n psi)``.
    """

    def __init__(self, n_beads: int, bonds: Sequence = (), bond_r0: Sequence = (), bond_k: Sequence = (),
                 angles: Sequence = (), angle_theta0: Sequence = (), angle_k: Sequence = (),
                 repulsion_pairs: Sequence = (), repulsion_sigma: Sequence = (), repulsion_epsilon: Sequence = (),
                 dihedrals: Sequence = (), dihedral_cos: Sequence = (), dihedral_sin: Sequence = (),
                 cmap: Sequence = (), cmap_modes: Sequence = (), cmap_cos: Sequence = (), cmap_sin: Sequence = ()):
        super().__init__()
        self.n_beads = int(n_beads)
        for name, rows, width in (("bonds", bonds, 2), ("angles", angles, 3), ("repulsion_pairs", repulsion_pairs, 2),
                                  ("dihedrals", dihedrals, 4), ("cmap", cmap, 8)):
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
        modes = torch.as_tensor([list(r) for r in cmap_modes], dtype=torch.long).reshape(-1, 2)
        self.register_buffer("cmap_modes", modes)
        for name, vals in (("cmap_cos", cmap_cos), ("cmap_sin", cmap_sin)):
            t = torch.as_tensor([list(r) for r in vals], dtype=dt)
            if t.numel() != len(self.cmap) * len(modes):
                raise ConfigError(f"prior {name} needs {len(self.cmap)} x {len(modes)} coefficients (cmap terms x "
                                  f"cmap_modes), got shape {tuple(t.shape)}")
            self.register_buffer(name, t.reshape(len(self.cmap), len(modes)))

    _CMAP_BUFFERS = ("cmap", "cmap_modes", "cmap_cos", "cmap_sin")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # model files written before the 2-D (phi, psi) term have no cmap buffers: a prior built without that term
        # (empty buffers) loads them as they are; one that has the term still needs its saved values
        for name in self._CMAP_BUFFERS:
            if prefix + name not in state_dict and getattr(self, name).numel() == 0:
                state_dict[prefix + name] = getattr(self, name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _cmap_energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energies (G, C) of the two-dimensional torsion terms of frames ``x`` (G, n_beads, 3)."""
        phi = dihedral_angles(x, self.cmap[:, :4])  # (G, C)
        psi = dihedral_angles(x, self.cmap[:, 4:])
        mn = self.cmap_modes.to(x.dtype)
        th = phi[..., None] * mn[:, 0] + psi[..., None] * mn[:, 1]  # (G, C, P)
        return (self.cmap_cos * torch.cos(th) + self.cmap_sin * torch.sin(th)).sum(-1)

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
        if len(self.cmap) and len(self.cmap_modes):
            e = e.index_add(1, self.cmap[:, 0], self._cmap_energy(x))
        return e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prior energy (G,) of frames (G, n_beads, 3) (the sum of :meth:`term_energies`, without crediting terms
        to beads: fewer operations per MD step)."""
        e = x.new_zeros(x.shape[:-2])  # (G,)
        if len(self.bonds):
            e = e + (0.5 * self.bond_k * (bond_lengths(x, self.bonds) - self.bond_r0) ** 2).sum(-1)
        if len(self.angles):
            e = e + (0.5 * self.angle_k * (bond_angles(x, self.angles) - self.angle_theta0) ** 2).sum(-1)
        if len(self.repulsion_pairs):
            e = e + (self.repulsion_epsilon * (self.repulsion_sigma / bond_lengths(x, self.repulsion_pairs)) ** 6
                     ).sum(-1)
        if len(self.dihedrals) and self.dihedral_cos.shape[1]:
            phi = dihedral_angles(x, self.dihedrals)  # (G, D)
            n = torch.arange(1, self.dihedral_cos.shape[1] + 1, dtype=x.dtype, device=x.device)
            nphi = phi[..., None] * n  # (G, D, M)
            e = e + (self.dihedral_cos * torch.cos(nphi) + self.dihedral_sin * torch.sin(nphi)).sum((-1, -2))
        if len(self.cmap) and len(self.cmap_modes):
            e = e + self._cmap_energy(x).sum(-1)
        return e


class CGFeatureNet(nn.Module):
    """A CGnet-style network (Wang et al., ACS Cent. Sci. 5, 755 (2019)): an MLP on the internal coordinates of one
    molecule, for small CG molecules where a message-passing network costs far more than the physics.

    Features: every bead-pair distance, the cosine of each listed bond angle, cos and sin of each listed dihedral,
    each standardised with the training frames' mean and std. Distances and cosines are E(3)-invariant; the
    dihedral sines change sign under reflection, so the network tells a molecule from its mirror image (alpha_R
    from alpha_L), as the dihedral prior does. The output is one energy per molecule, in units of the CG
    potential's ``energy_scale``.

    Args:
        n_beads: beads per molecule.
        hidden: widths of the hidden layers.
        activation: ``tanh`` (CGnet) or ``silu``.
        angles: (A, 3) bead triples (middle bead at the vertex).
        dihedrals: (D, 4) bead quadruples.
        feature_mean, feature_std: standardisation of the ``n_pairs + A + 2 D`` features (default 0 and 1);
            :func:`compscope.cg.model_kwargs` fits them on the training frames.

    Shapes:
        forward(x (B, n_beads, 3)) -> (B,)
    """

    ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU}

    def __init__(self, n_beads: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh",
                 angles: Sequence = (), dihedrals: Sequence = (), feature_mean: Sequence | None = None,
                 feature_std: Sequence | None = None):
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ConfigError(f"feature_net.activation={activation!r}: use one of {sorted(self.ACTIVATIONS)}")
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"feature_net.hidden={hidden}: give at least one positive layer width")
        self.n_beads = int(n_beads)
        pairs = [[i, j] for i in range(self.n_beads) for j in range(i + 1, self.n_beads)]
        for name, rows, width in (("pairs", pairs, 2), ("angles", angles, 3), ("dihedrals", dihedrals, 4)):
            idx = _index(list(rows), width, name)
            if idx.numel() and idx.max() >= self.n_beads:
                raise ConfigError(f"feature_net {name} name bead {int(idx.max())} but the molecule has "
                                  f"{n_beads} beads")
            self.register_buffer(name, idx)
        self.n_features = len(self.pairs) + len(self.angles) + 2 * len(self.dihedrals)
        dt = torch.get_default_dtype()
        for name, vals, default in (("feature_mean", feature_mean, 0.0), ("feature_std", feature_std, 1.0)):
            t = (torch.full((self.n_features,), default, dtype=dt) if vals is None
                 else torch.as_tensor(list(vals), dtype=dt).reshape(-1))
            if len(t) != self.n_features:
                raise ConfigError(f"feature_net.{name} has {len(t)} values for {self.n_features} features")
            self.register_buffer(name, t)
        if not bool((self.feature_std > 0).all()):
            raise ConfigError("feature_net.feature_std must be > 0")
        layers: list[nn.Module] = []
        width = self.n_features
        for h in hidden:
            layers += [nn.Linear(width, h), self.ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (unstandardised) features (B, n_features) of frames (B, n_beads, 3)."""
        feats = [bond_lengths(x, self.pairs)]
        if len(self.angles):
            a = x[..., self.angles[:, 0], :] - x[..., self.angles[:, 1], :]
            b = x[..., self.angles[:, 2], :] - x[..., self.angles[:, 1], :]
            feats.append((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)))
        if len(self.dihedrals):
            phi = dihedral_angles(x, self.dihedrals)
            feats += [torch.cos(phi), torch.sin(phi)]
        return torch.cat(feats, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp((self.features(x) - self.feature_mean) / self.feature_std).squeeze(-1)  # (B,)


class CGPotential(nn.Module):
    """A CG potential under the force-field contract: :class:`CGPrior` plus an equivariant network (optional).

    Args:
        bead_z: element of each bead's representative atom (n_beads,) (MD masses and input checks).
        prior: :class:`CGPrior` arguments (``n_beads`` filled in), or None for no prior.
        net: :class:`~compscope.models.EquivariantPotential` arguments except ``species`` (one type per bead
            position), or None for a prior-only model.
        energy_scale: the network's energies are multiplied by this (eV; kT is a natural unit).
        feature_net: :class:`CGFeatureNet` arguments except ``n_beads`` (a CGnet-style MLP on internal coordinates,
            the fast choice for a few beads), or None; its energy is scaled by ``energy_scale`` too.
    """

    # the compiled multi-step loop (dense_md_steps) up to this many replicas; measured on one core with the
    # 64 x 64 tanh MLP: 2.8x faster than stepping one at a time at 10 replicas, 1.4x at 30, equal near 100,
    # 0.6x at 300 (numba's tanh is scalar)
    fused_md_max_replicas = 64

    def __init__(self, bead_z: Sequence[int], prior: dict[str, Any] | None = None,
                 net: dict[str, Any] | None = None, energy_scale: float = 1.0,
                 feature_net: dict[str, Any] | None = None):
        super().__init__()
        self.atomic_numbers = [int(z) for z in bead_z]
        self.n_beads = len(self.atomic_numbers)
        if self.n_beads < 1:
            raise ConfigError("a CG potential needs at least one bead")
        self.prior = CGPrior(self.n_beads, **(prior or {}))
        self.feature_net = None if feature_net is None else CGFeatureNet(self.n_beads, **feature_net)
        self.net = None
        # without a message-passing network, MD forces come from one fused CPU kernel (models._cg_kernel)
        self.fused_kernels = True
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
        x = positions.view(-1, self.n_beads, 3)
        e = self.prior.term_energies(x)  # (G, n)
        if self.feature_net is not None:  # a molecule's energy, credited to its first bead
            fe = self.energy_scale * self.feature_net(x)  # (G,)
            e = e + nn.functional.pad(fe[:, None], (0, self.n_beads - 1))
        e = e.reshape(-1)  # (N,)
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

    def dense_energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energies (B,) of bead frames ``x`` (B, n_beads, 3): the prior plus the network over every bead pair of a
        molecule (pairs beyond the cutoff add exactly zero: the same energy as :meth:`forward`'s radius graph, with
        fixed edges and no graph building)."""
        e = self.prior(x)  # (B,)
        if self.feature_net is not None:
            e = e + self.energy_scale * self.feature_net(x)
        if self.net is not None:
            b = x.shape[0]
            edge_index, cell_shifts, edge_cell, idx, attrs = self._complete_edges(b, x.dtype, x.device)
            node = self.net.node_energies(x.reshape(-1, 3), attrs, idx, edge_index, cell_shifts, edge_cell,
                                          fused=self.net.fused_kernels, include_e0=False)  # (B * n,)
            e = e + self.energy_scale * node.view(b, self.n_beads).sum(-1)
        return e

    def energy_forces(self, x: torch.Tensor, training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies (B,) and forces (B, n_beads, 3) of bead frames ``x`` (B, n_beads, 3), forces ``-dU/dx`` by
        autograd of :meth:`dense_energy` (``training``: differentiable w.r.t. the weights), or, for a model
        without the message-passing network (prior and :class:`CGFeatureNet`), outside training, on the CPU, from
        the fused kernel of :mod:`compscope.models._cg_kernel` (same values, analytic forces; ``fused_kernels =
        False`` switches it off). This is the dense contract of :func:`compscope.md.simulate_dense` (one call per
        step for all replicas)."""
        if x.ndim != 3 or x.shape[1:] != (self.n_beads, 3):
            raise ConfigError(f"CG frames must be (B, {self.n_beads}, 3), got {tuple(x.shape)}")
        if (not training and self.net is None and self.fused_kernels and x.device.type == "cpu"
                and x.dtype in (torch.float32, torch.float64)):
            from ._cg_kernel import fused_cg_energy_forces

            return fused_cg_energy_forces(x, self._packed(x.dtype))
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            e = self.dense_energy(leaf)
            (g,) = torch.autograd.grad(e.sum(), leaf, create_graph=training)
        return (e, -g) if training else (e.detach(), -g.detach())

    def dense_md_steps(self, x: torch.Tensor, p: torch.Tensor, f: torch.Tensor, active: torch.Tensor,
                       **integrator) -> tuple[torch.Tensor, ...] | None:
        """Several MD steps in one compiled loop (:func:`compscope.models._cg_kernel.fused_md_steps`; the hook of
        :func:`compscope.md.simulate_dense`, which passes the integrator's constants and noise): new
        ``(x, p, f, energy)``, or None where the loop does not apply (a message-passing network, no MLP, not the
        CPU, ``fused_kernels`` off, more than ``fused_md_max_replicas`` replicas: there the batched tensor path is
        faster, its tanh vectorised); the caller then steps one at a time."""
        if not (self.net is None and self.feature_net is not None and self.fused_kernels
                and x.shape[0] <= self.fused_md_max_replicas
                and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)):
            return None
        from ._cg_kernel import fused_md_steps

        return fused_md_steps(x, p, f, active, self._packed(x.dtype), **integrator)

    def _packed(self, dtype: torch.dtype) -> tuple:
        """The fused kernel's arguments, cached until a weight or buffer changes (or the dtype)."""
        mods = (id(self.prior), id(self.feature_net))
        cached_mods, tensors = self.__dict__.get("_packed_tensors", (None, None))
        if cached_mods != mods:  # a replaced submodule
            tensors = [*self.parameters(), *self.buffers()]
            self.__dict__["_packed_tensors"] = (mods, tensors)
        key = (dtype, mods, *[(t.data_ptr(), t._version) for t in tensors])
        cached = self.__dict__.get("_packed_cache")
        if cached is None or cached[0] != key:
            from ._cg_kernel import pack_cg

            cached = (key, pack_cg(self, dtype))
            self.__dict__["_packed_cache"] = cached
        return cached[1]

    def _complete_edges(self, b: int, dtype: torch.dtype, device: torch.device):
        """Edges of B molecules with every ordered bead pair (sorted by receiver), zero shifts and cells, the bead
        index and one-hot of each node: cached per (B, dtype, device)."""
        key = (b, dtype, device)
        cache = self.__dict__.setdefault("_edge_cache", {})
        if key not in cache:
            n = self.n_beads
            ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            off = ii != jj
            base = (torch.arange(b) * n)[:, None]
            send, recv = (base + ii[off]).reshape(-1), (base + jj[off]).reshape(-1)
            order = torch.argsort(recv, stable=True)
            edge_index = torch.stack([send[order], recv[order]]).to(device)
            n_e = edge_index.shape[1]
            idx = (torch.arange(b * n) % n).to(device)
            if len(cache) >= 8:  # training sees a few batch sizes; MD one
                cache.clear()
            cache[key] = (edge_index, torch.zeros(n_e, 3, dtype=dtype, device=device),
                          torch.zeros(n_e, 3, 3, dtype=dtype, device=device), idx,
                          nn.functional.one_hot(idx, n).to(dtype))
        return cache[key]

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
