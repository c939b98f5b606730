"""Hydrogen masses for longer time steps: isotope substitution (D2O-style) or hydrogen mass repartitioning (HMR).

Static properties of the classical Boltzmann distribution over positions (density, g(r), free energies) do not
depend on the masses, so heavier hydrogens buy a larger stable step for them; dynamics (diffusion, spectra) change.
"""

from __future__ import annotations

import numpy as np

from ._checks import MDInputError

__all__ = ["with_hydrogen_mass", "masses_digest"]

BOND_MAX = 1.35  # Å: the longest X-H bond counted when repartitioning


def with_hydrogen_mass(atoms, mass: float, repartition: bool = False):
    """A copy of ``atoms`` whose hydrogens weigh ``mass`` amu.

    Args:
        atoms: an :class:`ase.Atoms` (periodic or not).
        mass: the new hydrogen mass, amu (e.g. 2.014 for deuterium; 3-4 for HMR).
        repartition: take the added mass from each hydrogen's bonded heavy atom (its nearest non-hydrogen within
            1.35 Å, minimum image), so the total mass and the molecules' masses stay the same (HMR, as OpenMM's
            ``hydrogenMass``); otherwise the hydrogens simply get heavier (isotope substitution).

    Raises:
        MDInputError: a non-positive mass, a hydrogen without a heavy atom within 1.35 Å (with ``repartition``),
            or a heavy atom left lighter than the hydrogens.
    """
    if not np.isfinite(mass) or mass <= 0:
        raise MDInputError(f"hydrogen mass must be a positive number of amu, got {mass}",
                           hint="e.g. 2.014 (deuterium) or 3-4 (hydrogen mass repartitioning)")
    out = atoms.copy()
    z = out.get_atomic_numbers()
    m = out.get_masses().astype(float)
    h = np.flatnonzero(z == 1)
    if len(h) == 0:
        return out
    if repartition:
        heavy = np.flatnonzero(z != 1)
        if len(heavy) == 0:
            raise MDInputError("repartitioning needs heavy atoms to take the hydrogen mass from; there are none",
                               hint="use isotope substitution (repartition off)")
        for i in h:
            dist = out.get_distances(int(i), heavy, mic=bool(out.pbc.any()))
            j = int(heavy[np.argmin(dist)])
            if dist.min() > BOND_MAX:
                raise MDInputError(
                    f"hydrogen {int(i)} has no heavy atom within {BOND_MAX} Å (nearest {dist.min():.2f} Å): cannot "
                    "repartition its mass", hint="check the structure, or use isotope substitution (repartition off)")
            m[j] -= mass - m[i]
        if np.any(m[z != 1] <= mass):
            raise MDInputError(f"repartitioning to {mass} amu leaves a heavy atom lighter than its hydrogens",
                               hint="use a smaller hydrogen mass")
    m[h] = mass
    out.set_masses(m)
    return out


def masses_digest(atoms_list) -> str:
    """A short fingerprint of the masses of a run's structures (for the resume guard)."""
    import hashlib

    m = np.concatenate([np.round(a.get_masses().astype(float), 6) for a in atoms_list])
    return hashlib.sha1(m.tobytes()).hexdigest()[:16]
