"""Forces and stress from a scalar energy by autograd: the one shared helper every model uses."""

from __future__ import annotations

import torch


def prepare_strain(positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor, compute_stress: bool):
    """Displace positions and cells by a symmetric strain (zero-valued) so dE/d(strain) gives the virial.

    Returns ``(positions', cell', strain)`` where ``strain`` is (G, 3, 3) or ``None``.
    """
    if not compute_stress:
        return positions, cell, None
    strain = torch.zeros_like(cell, requires_grad=True)  # (G, 3, 3)
    sym = 0.5 * (strain + strain.transpose(1, 2))
    positions = positions + torch.einsum("ni,nij->nj", positions, sym[batch])
    cell = cell + torch.bmm(cell, sym)
    return positions, cell, strain


def forces_and_stress(
    energy: torch.Tensor,  # (G,)
    positions: torch.Tensor,  # (N, 3) with requires_grad
    cell: torch.Tensor,  # (G, 3, 3) after strain
    strain: torch.Tensor | None,  # (G, 3, 3) or None
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Forces :math:`F = -\partial E/\partial r` (N, 3) and stress :math:`\sigma = V^{-1}\partial E/\partial\epsilon`.

    The stress follows ASE's sign (positive = tensile; ``atoms.get_stress()``), in eV/Å^3, shape (G, 3, 3).
    ``training=True`` keeps the graph (``create_graph``) so force losses can be differentiated.
    """
    inputs = [positions] if strain is None else [positions, strain]
    grads = torch.autograd.grad(
        [energy.sum()], inputs, create_graph=training, retain_graph=training, allow_unused=True
    )
    g_pos = grads[0]
    forces = -g_pos if g_pos is not None else torch.zeros_like(positions)
    stress = None
    if strain is not None:
        g_strain = grads[1] if grads[1] is not None else torch.zeros_like(strain)
        volume = torch.linalg.det(cell).abs().view(-1, 1, 1)
        stress = g_strain / volume
    return forces, stress


def potential_outputs(node_energy_fn, graph, compute_forces: bool, compute_stress: bool, training: bool) -> dict:
    """The shared tail of every potential: strain set-up, per-graph energy sum, forces and stress by autograd.

    Args:
        node_energy_fn: ``(positions (N, 3), edge_cell (E, 3, 3)) -> node energies (N,)``; positions may carry the
            strain used for the stress.
        graph: the :class:`~compscope.data.AtomicGraph` batch.

    Returns:
        ``{energy (G,), node_energy (N,)}`` plus ``forces (N, 3)`` and ``stress (G, 3, 3)`` when asked.
    """
    from compscope.data import keys as K

    from ._scatter import scatter_sum

    leaf = graph.positions
    if compute_forces or compute_stress:
        leaf = leaf.detach().requires_grad_(True)
    positions, cell, strain = prepare_strain(leaf, graph.cell, graph.batch, compute_stress)
    if graph.num_graphs == 1:  # one structure (a big box): a view, not an (E, 3, 3) copy of its cell
        edge_cell = cell.expand(graph.edge_index.shape[1], 3, 3)
    else:
        edge_cell = cell[graph.batch[graph.edge_index[0]]]  # (E, 3, 3)
    node_energy = node_energy_fn(positions, edge_cell)  # (N,)
    energy = scatter_sum(node_energy, graph.batch, graph.num_graphs)  # (G,)
    out = {K.ENERGY: energy, K.NODE_ENERGY: node_energy}
    if compute_forces or compute_stress:
        forces, stress = forces_and_stress(energy, leaf, cell, strain, training)
        out[K.FORCES] = forces
        if stress is not None:
            out[K.STRESS] = stress
    return out
