"""Boundaries to other engines, where units are converted: ASE (:mod:`.ase`), OpenMM (:mod:`.openmm`), LAMMPS.

- :class:`compscope.integrations.ase.Calculator`: the one ASE calculator (model files or modules, committees with
  their spread as uncertainty, unit options);
- :class:`compscope.integrations.openmm.OpenMMBridge`: a compscope potential inside an OpenMM ``System``, and the
  nm / kJ/mol / ps conversions;
- :mod:`compscope.integrations.lammps`: a compscope potential inside LAMMPS over MPI (domain decomposition, exact),
  LAMMPS ``metal`` units converted there.

Layer: ``data`` -> ``nn``/``models`` -> ``train``/``integrations`` -> task packages. Importing this package does
not import OpenMM (it loads when a bridge is built), LAMMPS or MPI.
"""

from . import ase, lammps, openmm

__all__ = ["ase", "lammps", "openmm"]
