"""Reference data generators (classical MD with OpenMM, fanned out with Ray; or many replicas at once on the dense
engine with the numba-evaluated System)."""

from ._alanine import (
    PDB_PATH,
    PHI,
    PSI,
    ReferenceError,
    dihedral,
    explicit_solvent_speed,
    generate_alanine_dipeptide,
    implicit_solvent_speed,
    plot_free_energy,
    run_replica,
)
from ._alanine_dense import generate_alanine_dipeptide_dense

__all__ = ["PDB_PATH", "PHI", "PSI", "ReferenceError", "dihedral", "explicit_solvent_speed",
           "generate_alanine_dipeptide", "generate_alanine_dipeptide_dense", "implicit_solvent_speed",
           "plot_free_energy", "run_replica"]
