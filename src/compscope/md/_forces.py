"""Force evaluation for MD: Verlet-skin neighbour lists, periodic wrapping, stopped replicas masked."""

from __future__ import annotations

import logging

import torch

from compscope.data import AtomicGraph
from compscope.data import keys as K

from ._checks import MDInputError
from ._state import MDState

__all__ = ["ForceEvaluator", "wrap_positions"]

log = logging.getLogger(__name__)


def wrap_positions(graph: AtomicGraph) -> torch.Tensor:
    """Positions wrapped into the cell along periodic directions (others untouched), shape (N, 3)."""
    pos = graph.positions
    pbc = graph.pbc[graph.batch]  # (N, 3)
    if not bool(graph.pbc.any()):
        return pos
    cell = graph.cell.to(pos.dtype)[graph.batch]  # (N, 3, 3)
    eye = torch.eye(3, dtype=pos.dtype, device=pos.device)
    cell_safe = torch.where(graph.pbc[:, :, None], graph.cell.to(pos.dtype), eye)  # (G, 3, 3)
    inv = torch.linalg.inv(cell_safe)[graph.batch]  # (N, 3, 3)
    frac = torch.einsum("ni,nij->nj", pos, inv)
    frac = torch.where(pbc, frac - torch.floor(frac), frac)
    wrapped = torch.einsum("ni,nij->nj", frac, cell)
    return torch.where(pbc, wrapped, pos)  # non-periodic directions are exactly unchanged


class ForceEvaluator:
    """Calls a potential on the MD graph and keeps its neighbour list valid.

    The graph is built with radius ``potential.cutoff + skin`` and rebuilt (after wrapping periodic
    positions into the cell) only once some atom moved more than ``skin / 2`` since the last build: then
    every pair closer than the cutoff is still in the list, and the potential (which zeroes edges beyond
    its cutoff) gives exactly the same result as with a fresh list.

    Args:
        potential: module following the force-field contract (``cutoff`` attribute, ``forward(graph)``).
        skin: Verlet skin in Å.
        wrap: wrap periodic positions into the cell at each rebuild.
        prune: pass the potential only the edges shorter than its cutoff (one length per listed edge per step):
            the skin's extra edges (about 35 % more at 5 Å + 0.5 Å) would cost message-passing work for exact
            zeros.
        block_atoms: evaluate periodic structures in blocks of atoms with their halo, at most about this many
            evaluated atoms (block + halo) per block (:func:`compscope.models.block_evaluate`: exact, the memory
            of one block whatever the box size). No neighbour list of the whole box is kept then (each block lists
            its own at every call), so ``state.graph`` has no edges. ``None``: the whole batch in one call.
    """

    def __init__(self, potential: torch.nn.Module, skin: float = 0.5, wrap: bool = True, prune: bool = True,
                 block_atoms: int | None = None):
        if not hasattr(potential, "cutoff"):
            raise TypeError(
                f"{type(potential).__name__} has no `cutoff` attribute: a compscope potential must define "
                "`cutoff` (Å) and forward(graph, compute_forces=True, compute_stress=False) -> dict"
            )
        if skin < 0:
            raise MDInputError(f"skin must be >= 0 Å, got {skin}")
        self.potential = potential
        self.skin = float(skin)
        self.wrap = wrap
        self.radius = float(potential.cutoff) + self.skin
        self.prune = bool(prune) and self.skin > 0
        self.rebuilds = 0
        # a barostat asks for the stress (G, 3, 3) on the steps where it acts; kept in state.thermostat["stress"]
        self.compute_stress = False
        if block_atoms is not None and int(block_atoms) < 1:
            raise MDInputError(f"block_atoms must be a positive number of atoms or None, got {block_atoms}")
        self.block_atoms = None if block_atoms is None else int(block_atoms)
        self.block_stats: dict = {}  # of the last blocked call: blocks, evaluated atoms, grid (per structure)

    def blocked(self, graph: AtomicGraph) -> bool:
        """Whether ``graph`` is evaluated in blocks (block_atoms set and every structure periodic)."""
        return self.block_atoms is not None and bool(graph.pbc.any(dim=1).all())

    def edgeless(self, graph: AtomicGraph) -> AtomicGraph:
        """``graph`` without edges (what a blocked evaluation keeps between calls)."""
        from dataclasses import replace

        return replace(graph, edge_index=graph.edge_index.new_zeros(2, 0),
                       cell_shifts=graph.cell_shifts.new_zeros(0, 3), cutoff=self.radius)

    def pruned(self, graph: AtomicGraph) -> AtomicGraph:
        """The graph with only the edges shorter than the potential's cutoff (same energies and forces: the
        potential's cutoff function is exactly zero beyond it)."""
        from dataclasses import replace

        from compscope.nn import edges_within, fused_available

        cutoff = float(self.potential.cutoff)
        if graph.num_graphs == 1 and fused_available(graph.positions):  # one pass in numba, same edges
            edge_index, shifts = edges_within(graph.positions, graph.cell[0], graph.edge_index, graph.cell_shifts,
                                              cutoff)
            return replace(graph, edge_index=edge_index, cell_shifts=shifts, cutoff=cutoff)
        with torch.no_grad():
            keep = graph.edge_vectors().norm(dim=-1) < cutoff  # (E,)
        idx = torch.nonzero(keep).flatten()
        return replace(graph, edge_index=graph.edge_index[:, idx], cell_shifts=graph.cell_shifts[idx], cutoff=cutoff)

    def build(self, graph: AtomicGraph) -> AtomicGraph:
        """Wrap (periodic) and rebuild the neighbour list at ``radius``."""
        if self.wrap and bool(graph.pbc.any()):
            graph = graph.with_positions(wrap_positions(graph))
        self.rebuilds += 1
        return graph.rebuild_edges(self.radius)

    def _call_blocked(self, state: MDState) -> MDState:
        from compscope.models import block_evaluate, layers_of_model, plan_blocks

        graph = state.graph
        if self.wrap:
            graph = graph.with_positions(wrap_positions(graph))
        if graph.num_edges:
            graph = self.edgeless(graph)
        halo = layers_of_model(self.potential) * float(self.potential.cutoff)
        forces, energy, stress = [], [], []
        self.block_stats = {}
        for g, (lo, hi) in enumerate(graph._node_slices()):
            cell, pbc = graph.cell[g], graph.pbc[g]
            plan = plan_blocks(cell.detach().double().numpy(), pbc.numpy(), hi - lo, halo, self.block_atoms)
            stats: dict = {}
            out = block_evaluate(self.potential, graph.positions[lo:hi], graph.atomic_numbers[lo:hi], cell, pbc,
                                 plan=plan, compute_stress=self.compute_stress, stats=stats)
            self.block_stats[g] = stats
            forces.append(out[K.FORCES])
            energy.append(out[K.ENERGY])
            if self.compute_stress:
                stress.append(out[K.STRESS])
        dtype = graph.positions.dtype
        act_atom = state.active[graph.batch]
        frc = torch.cat(forces).detach().to(dtype)
        frc = torch.where(act_atom[:, None], frc, torch.zeros_like(frc))
        en = torch.cat(energy).detach().to(dtype)
        en = torch.where(state.active, en, torch.zeros_like(en))
        thermostat = state.thermostat
        if self.compute_stress:
            thermostat = {**thermostat, "stress": torch.cat(stress).detach().to(dtype)}
        return state.replace(graph=graph, forces=frc, energy=en, ref_positions=graph.positions, thermostat=thermostat)

    def __call__(self, state: MDState) -> MDState:
        """Update ``graph`` (if needed), ``forces`` (N, 3) and ``energy`` (G,) of ``state``."""
        if self.blocked(state.graph):
            return self._call_blocked(state)
        graph = state.graph
        ref = state.ref_positions
        disp = (graph.positions - ref).norm(dim=-1)  # (N,)
        act_atom = state.active[graph.batch]
        disp = torch.where(act_atom, disp, torch.zeros_like(disp))
        if graph.cutoff != self.radius or bool((disp > 0.5 * self.skin).any()) or not bool(torch.isfinite(disp).all()):
            finite = torch.isfinite(graph.positions).all(-1)
            if bool(finite.all()):
                graph = self.build(graph)
                ref = graph.positions.clone()
        out = self.potential(self.pruned(graph) if self.prune else graph, compute_forces=True,
                             compute_stress=self.compute_stress)
        dtype = graph.positions.dtype
        forces = out[K.FORCES].detach().to(dtype)  # (N, 3)
        energy = out[K.ENERGY].detach().to(dtype)  # (G,)
        forces = torch.where(act_atom[:, None], forces, torch.zeros_like(forces))
        # a stopped replica is still in the batch: whatever the model says about it (NaN, if that is why it was
        # stopped) must not reach the trajectory's energies; it holds 0 as the monitor set it when stopping it
        energy = torch.where(state.active, energy, torch.zeros_like(energy))
        thermostat = state.thermostat
        if self.compute_stress:
            thermostat = {**thermostat, "stress": out[K.STRESS].detach().to(dtype)}
        return state.replace(graph=graph, forces=forces, energy=energy, ref_positions=ref, thermostat=thermostat)
