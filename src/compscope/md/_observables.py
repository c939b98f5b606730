"""Structural monitors of periodic liquids: radial distribution functions and mass density.

The RDF counts pairs with the periodic neighbour list (:func:`compscope.data.neighbor_list`, every image), so it
needs no minimum-image assumption and ``r_max`` may exceed half the cell.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_masses

__all__ = ["radial_distribution", "density_g_cm3"]

_AMU_PER_A3_TO_G_CM3 = 1.66053906660  # 1 amu/Å^3 in g/cm^3


def density_g_cm3(atoms) -> float:
    """Mass density of a periodic structure in g/cm^3 (total mass over the cell volume)."""
    vol = abs(float(np.linalg.det(atoms.cell.array)))
    if vol <= 0:
        raise ValueError("density needs a cell with non-zero volume")
    return float(atomic_masses[atoms.numbers].sum() / vol * _AMU_PER_A3_TO_G_CM3)


def radial_distribution(frames, r_max: float, n_bins: int = 100, pair: tuple[int, int] | None = None):
    """Radial distribution function g(r) averaged over periodic ``frames`` (ASE Atoms, or one).

    Args:
        frames: structures with cells and pbc (the cell may change between frames, as under NPT).
        r_max: largest distance, Å.
        n_bins: bins over [0, r_max].
        pair: atomic numbers ``(Za, Zb)`` for a partial g_ab(r) (e.g. ``(8, 8)`` for O-O); None: all atoms.

    Returns:
        ``(r, g)``: bin centres (n_bins,) in Å and g(r) (n_bins,), normalised so an ideal gas gives 1:
        :math:`g_{ab}(r) = \\frac{V}{N_a N_b} \\langle \\sum_{i \\in a} \\sum_{j \\in b, j \\ne i}
        \\delta(r - r_{ij}) \\rangle / (4 \\pi r^2)`, each bin divided by its exact shell volume.
    """
    from compscope.data import neighbor_list

    if not isinstance(frames, (list, tuple)):
        frames = [frames]
    edges = np.linspace(0.0, r_max, n_bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # (n_bins,) Å^3
    acc = np.zeros(n_bins)
    for atoms in frames:
        if not atoms.pbc.all():
            raise ValueError("radial_distribution needs periodic structures (pbc along a, b and c)")
        z = atoms.numbers
        a_mask = np.ones(len(z), bool) if pair is None else z == pair[0]
        b_mask = np.ones(len(z), bool) if pair is None else z == pair[1]
        n_a, n_b = int(a_mask.sum()), int(b_mask.sum())
        if n_a == 0 or n_b == 0:
            raise ValueError(f"no atoms of the pair {pair} in the structure")
        ei, shifts = neighbor_list(atoms.positions, r_max, cell=atoms.cell.array, pbc=atoms.pbc)
        keep = a_mask[ei[0]] & b_mask[ei[1]]
        d = atoms.positions[ei[1, keep]] - atoms.positions[ei[0, keep]] + shifts[keep] @ atoms.cell.array
        counts, _ = np.histogram(np.linalg.norm(d, axis=1), bins=edges)
        vol = abs(float(np.linalg.det(atoms.cell.array)))
        acc += counts * vol / (n_a * n_b) / shell
    return 0.5 * (edges[1:] + edges[:-1]), acc / len(frames)
