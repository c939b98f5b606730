"""Boundaries to other engines, where units are converted: ASE (:mod:`.ase`) and OpenMM (:mod:`.openmm`).

- :class:`compscope.integrations.ase.Calculator`: the one ASE calculator (model files or modules, committees with
  their spread as uncertainty, unit options);
- :class:`compscope.integrations.openmm.OpenMMBridge`: a compscope potential inside an OpenMM ``System``, and the
  nm / kJ/mol / ps conversions.

Layer: ``data`` -> ``nn``/``models`` -> ``train``/``integrations`` -> task packages. Importing this package does
not import OpenMM (it loads when a bridge is built).
"""

from . import ase, openmm

__all__ = ["ase", "openmm"]
