"""Error types of the LAMMPS route; every message says what is wrong and the hint what to do."""

from __future__ import annotations

from compscope.errors import CompscopeError

__all__ = ["LammpsError", "LammpsInputError", "LammpsModelError", "LammpsNotAvailableError"]


class LammpsError(CompscopeError, RuntimeError):
    """A LAMMPS run failed (LAMMPS's own message is included)."""


class LammpsInputError(LammpsError, ValueError):
    """A data file or setting the run cannot use: unknown atom types, a missing mass, a bad option."""


class LammpsModelError(LammpsError, ValueError):
    """A model the domain-decomposed route cannot run exactly (no per-atom energies, unknown receptive field)."""


class LammpsNotAvailableError(LammpsError, ImportError):
    """The ``lammps`` / ``mpich`` / ``mpi4py`` packages (the ``compscope[lammps]`` extra) are not installed."""
