"""LAMMPS ``units metal`` at the boundary: Å, eV, eV/Å, amu (g/mol), K as compscope; time in ps, pressure in bar.

compscope's internal units (docs/conventions.md) are eV, Å, amu and fs through :mod:`ase.units`; LAMMPS ``metal``
differs only in time (ps) and hence velocity (Å/ps), and reports pressure in bar. Every conversion of the LAMMPS
route goes through these constants.

Examples:
    >>> FS_TO_PS * 0.5  # a 0.5 fs time step as LAMMPS ``timestep``
    0.0005
    >>> round(EV_PER_A3_TO_BAR)
    1602177
"""

from __future__ import annotations

from ase import units as _u

__all__ = ["UNITS", "FS_TO_PS", "PS_TO_FS", "EV_PER_A3_TO_BAR", "ENERGY_TO_EV", "LENGTH_TO_A", "FORCE_TO_EV_PER_A"]

UNITS = "metal"
FS_TO_PS = 1e-3
PS_TO_FS = 1e3
ENERGY_TO_EV = 1.0  # metal energy: eV
LENGTH_TO_A = 1.0  # metal distance: Å
FORCE_TO_EV_PER_A = ENERGY_TO_EV / LENGTH_TO_A
EV_PER_A3_TO_BAR = 1.0 / _u.bar  # metal pressure: bar (LAMMPS's nktv2p = 1.6021765e6)
