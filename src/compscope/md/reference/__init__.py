"""Reference data generators (classical MD with OpenMM, fanned out with Ray)."""

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

__all__ = ["PDB_PATH", "PHI", "PSI", "ReferenceError", "dihedral", "explicit_solvent_speed",
           "generate_alanine_dipeptide", "implicit_solvent_speed", "plot_free_energy",
           "run_replica"]
