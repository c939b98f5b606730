"""Atom-chunked evaluation of a potential on a big periodic box: blocks of atoms with their halo, exact.

The energy is a sum of per-atom energies, ``E = sum_i e_i``, and ``e_i`` depends only on the atoms within the
model's receptive field ``R = num_interactions x r_max`` of atom ``i`` (each message-passing layer reaches one
cutoff further). So the box is cut into blocks ``B`` (a grid in fractional coordinates) and each block is evaluated
on its own graph: the block's atoms plus every periodic image within ``R`` of the block (the halo; images are
explicit, the block graph has no cell), trimmed by :func:`local_graph` to what the block's energies need. Then

- ``E = sum_B E_B`` with ``E_B = sum_{i in B} e_i``,
- ``F_k = -sum_B sum_{copies k' of k} dE_B/dx_k'`` (a halo atom's force contribution goes back to its original),
- ``W = sum_B sum_k' x_k' (x) dE_B/dx_k'`` (the strain derivative of every explicit image position),

exactly, up to floating-point summation order: the same decomposition as the LAMMPS route over MPI ranks
(:mod:`compscope.integrations.lammps`), here within one process so that the memory of one force call is that of
one block, whatever the box size. No neighbour list of the whole box is built: each block lists its own
neighbours (vesin, no cell) at every call, which costs far less than the model.

Block sizes come from a memory budget (:func:`plan_blocks`): the model's activation memory per evaluated atom
(:func:`bytes_per_evaluated_atom`, measured on the presets) times the evaluated atoms (block + halo) must stay
below it. The halo costs work: a block of ``b`` Å edge evaluates about ``(1 + 2R/b)^3`` times its own atoms in the
first layer, so the biggest blocks the budget allows are the fastest.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from compscope.data import AtomicGraph, neighbor_list
from compscope.data import keys as K
from compscope.errors import CompscopeError

__all__ = ["BlockPlan", "BlockError", "auto_block_atoms", "block_evaluate", "block_graph",
           "bytes_per_evaluated_atom", "layers_of_model", "local_graph", "plan_blocks", "DEFAULT_BLOCK_MEMORY_GIB"]

log = logging.getLogger(__name__)

DEFAULT_BLOCK_MEMORY_GIB = 6.0
"""Default memory budget of one force call (GiB): the activations autograd keeps for the backward pass. Bigger
blocks cost less halo work; 6 GiB holds ~120k evaluated atoms of the ``small`` preset in float32 with radial
tables (``radial_table_intervals``, MD's default in float32), ~40k with the radial network."""


class BlockError(CompscopeError, ValueError):
    """A potential or a structure cannot be evaluated in blocks."""


def layers_of_model(model) -> int:
    """Message-passing depth ``L = ceil(receptive_field / cutoff)`` (1 for a pair potential without
    ``receptive_field``: it sees its cutoff and no further)."""
    cutoff = getattr(model, "cutoff", None)
    if cutoff is None or not float(cutoff) > 0:
        raise BlockError(f"{type(model).__name__} has no positive `cutoff`: it is not a compscope potential",
                         hint="pass a compscope force field (model.pt / .jit.pt) or an analytic potential")
    field = getattr(model, "receptive_field", None)
    if field is None:
        return 1
    return max(1, math.ceil(float(field) / float(cutoff) - 1e-9))


def local_graph(positions: np.ndarray, numbers: np.ndarray, n_owned: int, cutoff: float, layers: int,
                dtype: torch.dtype) -> tuple[AtomicGraph, np.ndarray]:
    """The graph of owned + halo atoms that the owned atoms' energies need.

    Only what the owned energies need is kept: an edge (radius ``cutoff``) is kept when one of its atoms is within
    ``layers - 1`` hops of an owned atom, and atoms further out are dropped, which is exact for any model whose
    per-atom energy is built from ``layers`` rounds of messages along edges (either direction).

    Args:
        positions: (M, 3) Å, owned atoms first (``n_owned`` of them), then the halo (explicit images).
        numbers: (M,) atomic numbers.
        cutoff: model cutoff (Å); layers: message-passing depth.

    Returns:
        ``(graph, kept)``: a non-periodic graph of the kept atoms (owned first, same order) and their indices (M',)
        into ``positions``.
    """
    edge_index, _ = neighbor_list(positions, cutoff)
    send, recv = edge_index
    near = np.zeros(len(positions), dtype=bool)
    near[:n_owned] = True
    for _ in range(layers - 1):  # atoms within L-1 hops of an owned atom
        near[send[near[recv]]] = True
    keep_edge = near[send] | near[recv]
    send, recv = send[keep_edge], recv[keep_edge]
    kept_mask = near.copy()
    kept_mask[send] = True
    kept = np.flatnonzero(kept_mask)
    new = np.full(len(positions), -1, dtype=np.int64)
    new[kept] = np.arange(len(kept))
    graph = _open_graph(positions[kept], numbers[kept], np.stack([new[send], new[recv]]), cutoff, dtype)
    return graph, kept


def _open_graph(positions: np.ndarray, numbers: np.ndarray, edge_index: np.ndarray, cutoff: float,
                dtype: torch.dtype) -> AtomicGraph:
    """One non-periodic graph of a block's atoms (cartesian edges: the block's positions are already unwrapped)."""
    return AtomicGraph(
        positions=torch.as_tensor(positions, dtype=dtype),
        atomic_numbers=torch.as_tensor(numbers, dtype=torch.long),
        edge_index=torch.as_tensor(edge_index, dtype=torch.long),
        cell_shifts=torch.zeros(edge_index.shape[1], 3, dtype=dtype),
        batch=torch.zeros(len(positions), dtype=torch.long),
        cell=torch.zeros(1, 3, 3, dtype=dtype),
        pbc=torch.zeros(1, 3, dtype=torch.bool),
        cutoff=float(cutoff),
    )


def block_graph(positions: np.ndarray, numbers: np.ndarray, n_owned: int, cutoff: float, layers: int,
                dtype: torch.dtype) -> tuple[AtomicGraph, np.ndarray, list[int]]:
    """Like :func:`local_graph`, for models that pass messages from sender to receiver layer by layer and can
    compute fewer atoms at each deeper layer (``EquivariantPotential.owned_energies``): atoms ordered by their
    hop distance from the owned atoms (owned first), only the edges into atoms within ``layers - 1`` hops, sorted
    by receiver.

    Returns:
        ``(graph, kept, receivers)``: ``receivers[l]`` is how many leading atoms layer ``l`` must compute (the
        atoms within ``layers - 1 - l`` hops; the last is ``n_owned``).
    """
    edge_index, _ = neighbor_list(positions, cutoff, sort=False)  # sorted below, in the new order
    send, recv = edge_index
    m = len(positions)
    hop = np.full(m, layers, dtype=np.int64)
    hop[:n_owned] = 0
    for k in range(1, layers):
        reach = np.zeros(m, dtype=bool)
        reach[send[hop[recv] <= k - 1]] = True
        hop[reach & (hop > k)] = k
    inner = hop[recv] <= layers - 1  # edges into atoms that some layer computes
    send, recv = send[inner], recv[inner]
    kept_mask = hop <= layers - 1
    kept_mask[send] = True
    kept = np.flatnonzero(kept_mask)
    kept = kept[np.argsort(hop[kept], kind="stable")]  # owned (hop 0) first, in their order
    new = np.full(m, -1, dtype=np.int64)
    new[kept] = np.arange(len(kept))
    s_new, r_new = new[send], new[recv]
    order = np.lexsort((s_new, r_new))
    graph = _open_graph(positions[kept], numbers[kept], np.stack([s_new[order], r_new[order]]), cutoff, dtype)
    counts = np.bincount(hop[kept], minlength=layers + 1)
    receivers = [int(counts[: layers - layer].sum()) for layer in range(layers)]
    return graph, kept, receivers


# ------------------------------------------------------------------------------------------------------------
def bytes_per_evaluated_atom(model, dtype: torch.dtype | None = None, density: float = 0.1,
                             blocked: bool = False) -> float:
    """Estimated peak memory (bytes) of one force call per evaluated atom, for choosing block sizes.

    For an :class:`~compscope.models.EquivariantPotential`: ``1.25 x itemsize x (40 L w + 160 n_nb)`` with ``L``
    layers, ``w`` the width of the atomic basis (channels x (max_ell + 1)^2) and ``n_nb`` the neighbours within the
    cutoff at number ``density`` (atoms/Å^3; liquid water: 0.1). The two constants are fitted to single force
    calls of 12,288 water atoms in float32 with 50k-pair edge chunks (126 kB/atom for the ``small`` preset at
    5 Å, 103 kB/atom for ``local`` at 6 Å, peak RSS above the start); 1.25 is a safety factor. ``blocked``: per
    evaluated atom of a block graph, where deeper layers compute fewer atoms: 0.7 x that (a 10^6-atom box of the
    ``small`` preset in blocks of 22k evaluated atoms peaked at ~89 kB per evaluated atom above the start). With
    radial tables (``model.radial_table_intervals`` set: no per-edge radial activations) the constants are 14.7
    and 38.7 (fitted to 42 kB/atom for ``small``, 31 kB/atom for ``local`` at 12,288 atoms; 38 kB/atom measured
    at 98,304). Other potentials get 20 kB per atom in float32."""
    if dtype is None:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float64)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    interactions = getattr(model, "interactions", None)
    if interactions is None:
        return 20e3 * itemsize / 4
    width = interactions[0].irreps_out.dim  # atomic basis A: channels x (max_ell + 1)^2
    neighbours = density * 4.0 / 3.0 * math.pi * float(model.cutoff) ** 3
    per_width, per_neighbour = (14.7, 38.7) if getattr(model, "radial_table_intervals", None) else (40.0, 160.0)
    whole = 1.25 * itemsize * (per_width * len(interactions) * width + per_neighbour * neighbours)
    return 0.7 * whole if blocked and hasattr(model, "owned_energies") else whole


def auto_block_atoms(model, n_atoms: int, volume: float, dtype: torch.dtype | None = None,
                     memory_gib: float = DEFAULT_BLOCK_MEMORY_GIB) -> int | None:
    """Evaluated atoms per block (block + halo) that fit ``memory_gib``, or ``None`` when the whole structure
    fits (no blocks: no halo work)."""
    if not memory_gib > 0:
        raise BlockError(f"the block memory budget must be > 0 GiB, got {memory_gib}")
    per_atom = bytes_per_evaluated_atom(model, dtype, density=n_atoms / volume if volume > 0 else 0.1)
    if n_atoms * per_atom <= memory_gib * 2**30:
        return None
    per_block_atom = bytes_per_evaluated_atom(model, dtype, density=n_atoms / volume if volume > 0 else 0.1,
                                              blocked=True)
    return max(1, int(memory_gib * 2**30 / per_block_atom))


@dataclass(frozen=True)
class BlockPlan:
    """A grid of blocks over a periodic cell: ``grid`` (n1, n2, n3) cuts of the fractional coordinates (the halo
    is always the model's receptive field, whatever the grid)."""

    grid: tuple[int, int, int]

    @property
    def num_blocks(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]


def _plane_spacings(cell: np.ndarray) -> np.ndarray:
    """Distances (3,) between the lattice planes normal to each reciprocal vector (Å)."""
    inv = np.linalg.inv(cell)  # frac = pos @ inv: column k is the k-th reciprocal vector (no 2 pi)
    return 1.0 / np.linalg.norm(inv, axis=0)


def plan_blocks(cell: np.ndarray, pbc: np.ndarray, n_atoms: int, halo: float, max_evaluated: int) -> BlockPlan:
    """The coarsest grid of blocks whose block + halo holds about ``max_evaluated`` atoms or fewer.

    Blocks are as close to cubes as the cell allows (the edge along each lattice direction about the same); the
    evaluated atoms of a block are estimated at the box's mean density over the block widened by ``halo`` on every
    face. Non-periodic directions are not cut. Blocks do not get thinner than a quarter of the halo (or 0.5 Å):
    when even those exceed ``max_evaluated`` (a budget below the halo's own atoms) the plan says so in a warning
    and takes them.
    """
    pbc = np.asarray(pbc, dtype=bool)
    spacing = _plane_spacings(np.asarray(cell, dtype=np.float64))
    density = n_atoms / abs(np.linalg.det(cell))
    best = (1, 1, 1)
    edge = float(spacing[pbc].max()) if pbc.any() else 0.0
    while edge > 0:
        grid = tuple(int(math.ceil(spacing[k] / edge)) if pbc[k] else 1 for k in range(3))
        widths = spacing / np.asarray(grid)
        evaluated = density * float(np.prod([widths[k] + 2 * halo if pbc[k] else spacing[k] for k in range(3)]))
        best = grid
        # blocks thinner than a quarter of the halo hardly lower the evaluated atoms (the halo is most of them)
        # but multiply the blocks: stop there, over budget
        if evaluated <= max_evaluated or min(widths[pbc]) < max(0.5, 0.25 * halo):
            if evaluated > max_evaluated:
                log.warning("blocks of %.1f Å still evaluate ~%d atoms (halo %.1f Å), above the %d asked for: "
                            "the memory budget is too small for this model", min(widths[pbc]), evaluated, halo,
                            max_evaluated)
            break
        edge *= 0.85
    return BlockPlan(grid=best)


def _block_members(frac: np.ndarray, pbc: np.ndarray, grid, halo_frac: np.ndarray):
    """For each block: (atom indices (M,), integer image shifts (M, 3)) with the block's own atoms first.

    ``frac`` are fractional coordinates wrapped into [0, 1) along periodic directions."""
    grid = np.asarray(grid)
    cell_of = np.minimum((frac * grid).astype(np.int64), grid - 1)  # (N, 3) block of each atom
    cell_of[:, ~pbc] = 0
    flat = np.ravel_multi_index(cell_of.T, tuple(grid))
    for b, ijk in enumerate(itertools.product(*(range(g) for g in grid))):
        own = np.flatnonzero(flat == b)
        lo = np.asarray(ijk) / grid - halo_frac
        hi = (np.asarray(ijk) + 1) / grid + halo_frac
        # per direction, the image shifts s with frac + s inside [lo, hi) (one shift 0 along a non-periodic one)
        per_dim = []
        for k in range(3):
            if not pbc[k]:
                per_dim.append([(0, np.ones(len(frac), dtype=bool))])
                continue
            shifts = range(int(math.floor(lo[k])) - 1, int(math.ceil(hi[k])) + 1)
            masks = [(s, (frac[:, k] + s >= lo[k]) & (frac[:, k] + s < hi[k])) for s in shifts]
            per_dim.append([(s, m) for s, m in masks if m.any()])
        idx, img = [own], [np.zeros((len(own), 3), dtype=np.int64)]
        for (s1, m1), (s2, m2), (s3, m3) in itertools.product(*per_dim):
            sel = m1 & m2 & m3
            if s1 == 0 and s2 == 0 and s3 == 0:
                sel = sel & (flat != b)  # the block's own atoms are already first
            at = np.flatnonzero(sel)
            if len(at):
                idx.append(at)
                img.append(np.broadcast_to(np.array([s1, s2, s3], dtype=np.int64), (len(at), 3)))
        yield len(own), np.concatenate(idx), np.concatenate(img)


def block_evaluate(
    model: torch.nn.Module,
    positions: torch.Tensor,  # (N, 3)
    atomic_numbers: torch.Tensor,  # (N,)
    cell: torch.Tensor,  # (3, 3)
    pbc: torch.Tensor,  # (3,)
    plan: BlockPlan | None = None,
    max_evaluated: int | None = None,
    compute_stress: bool = False,
    stats: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Energy, forces (and stress) of one periodic structure, evaluated block by block (exact; see module doc).

    Args:
        model: a potential under the force-field contract whose output has per-atom energies (``node_energy``),
            with ``cutoff`` and (for message passing) ``receptive_field``.
        positions, atomic_numbers, cell, pbc: the structure (cell rows are lattice vectors).
        plan: the grid of blocks; default from ``max_evaluated`` (:func:`plan_blocks`).
        max_evaluated: atoms per block + halo (default: :data:`DEFAULT_BLOCK_MEMORY_GIB` over
            :func:`bytes_per_evaluated_atom`).
        compute_stress: also return the stress (ASE sign, eV/Å^3).
        stats: if given, filled with ``blocks``, ``evaluated_atoms`` (sum over blocks), ``max_block_atoms`` and
            ``edges`` (sum over blocks).

    Returns:
        ``{energy (1,) float64, forces (N, 3), node_energy (N,), [stress (1, 3, 3)]}`` in the positions' dtype
        (energy float64).

    Raises:
        BlockError: a non-periodic structure, a potential without per-atom energies.
    """
    pbc_np = pbc.detach().cpu().numpy().astype(bool)
    if not pbc_np.any():
        raise BlockError("block evaluation needs a periodic structure (the blocks tile its cell)",
                         hint="evaluate molecules in one piece (atom_chunk=None)")
    layers = layers_of_model(model)
    cutoff = float(model.cutoff)
    halo = layers * cutoff
    cell_np = cell.detach().cpu().double().numpy()
    pos_np = positions.detach().cpu().double().numpy()
    n = len(pos_np)
    dtype = positions.dtype
    if plan is None:
        if max_evaluated is None:
            volume = abs(float(np.linalg.det(cell_np)))
            max_evaluated = int(DEFAULT_BLOCK_MEMORY_GIB * 2**30
                                / bytes_per_evaluated_atom(model, dtype, density=n / volume, blocked=True))
        plan = plan_blocks(cell_np, pbc_np, n, halo, max_evaluated)
    frac = pos_np @ np.linalg.inv(cell_np)
    wrap = np.where(pbc_np, np.floor(frac), 0.0)
    frac = frac - wrap
    base = pos_np - wrap @ cell_np  # wrapped positions (N, 3)
    halo_frac = np.where(pbc_np, halo / _plane_spacings(cell_np), 0.0)
    numbers = atomic_numbers.detach().cpu().numpy()
    forces = torch.zeros(n, 3, dtype=torch.float64)
    node_energy = torch.zeros(n, dtype=torch.float64)
    energy = torch.zeros((), dtype=torch.float64)
    virial = torch.zeros(3, 3, dtype=torch.float64)
    st = {"blocks": 0, "evaluated_atoms": 0, "max_block_atoms": 0, "edges": 0}
    for n_own, idx, img in _block_members(frac, pbc_np, plan.grid, halo_frac):
        if n_own == 0:
            continue
        sub = base[idx] + img @ cell_np  # explicit images (M, 3)
        pruned = hasattr(model, "owned_energies")  # layer by layer fewer atoms (EquivariantPotential)
        if pruned:
            graph, kept, receivers = block_graph(sub, numbers[idx], n_own, cutoff, layers, dtype)
        else:
            graph, kept = local_graph(sub, numbers[idx], n_own, cutoff, layers, dtype)
        graph = graph.to(positions.device)
        leaf = graph.positions.detach().requires_grad_(True)
        inputs = [leaf]
        pos = leaf
        if compute_stress:
            strain = torch.zeros(3, 3, dtype=dtype, device=leaf.device, requires_grad=True)
            pos = leaf + leaf @ (0.5 * (strain + strain.T))
            inputs.append(strain)
        with torch.enable_grad():
            if pruned:
                e_own = model.owned_energies(graph, pos, receivers)
            else:
                out = model(graph.with_positions(pos), compute_forces=False)
                if K.NODE_ENERGY not in out:
                    raise BlockError(f"{type(model).__name__} returns no per-atom energies ({K.NODE_ENERGY})",
                                     hint="block evaluation needs E = sum of per-atom energies; use a compscope "
                                          "force field, or atom_chunk=None")
                e_own = out[K.NODE_ENERGY][:n_own]
            grads = torch.autograd.grad(e_own.to(torch.float64).sum(), inputs, allow_unused=True)
        orig = torch.as_tensor(idx[kept])
        if grads[0] is not None:
            forces.index_add_(0, orig, -grads[0].detach().to(device="cpu", dtype=torch.float64))
        if compute_stress and grads[1] is not None:
            virial += grads[1].detach().to(device="cpu", dtype=torch.float64)
        e_own = e_own.detach().to(device="cpu", dtype=torch.float64)
        node_energy[torch.as_tensor(idx[:n_own])] = e_own
        energy += e_own.sum()
        st["blocks"] += 1
        st["evaluated_atoms"] += int(len(kept))
        st["max_block_atoms"] = max(st["max_block_atoms"], int(len(kept)))
        st["edges"] += graph.num_edges
        log.debug("block %d of %d: %d owned atoms, %d evaluated, %d edges", st["blocks"], plan.num_blocks, n_own,
                  len(kept), graph.num_edges)
        del graph, leaf, pos, grads
    if stats is not None:
        stats.update(st, grid=plan.grid)
    dev = positions.device
    result = {K.ENERGY: energy.view(1).to(dev), K.FORCES: forces.to(device=dev, dtype=dtype),
              K.NODE_ENERGY: node_energy.to(device=dev, dtype=dtype)}
    if compute_stress:
        volume = abs(float(np.linalg.det(cell_np)))
        result[K.STRESS] = (virial / volume).view(1, 3, 3).to(device=dev, dtype=dtype)
    return result
