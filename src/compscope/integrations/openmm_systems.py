"""Classical OpenMM systems shared by task packages: alanine dipeptide (ACE-ALA-NME) with amber14.

One builder, :func:`alanine_dipeptide_system`, for every package that needs the molecule: the MD reference data
(:mod:`compscope.md.reference`, bonds to hydrogen constrained) and the Boltzmann-sampling target and its
replica-exchange reference (:mod:`compscope.sampling`, unconstrained). The committed ``alanine-dipeptide.pdb``
lives next to this module (provenance: ``compscope/md/reference/_build_pdb.py``). Importing this module does
not import OpenMM. Units are OpenMM's (nm, kJ/mol) here; callers convert at their boundary.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ALANINE_DIPEPTIDE_PDB", "ALANINE_PHI", "ALANINE_PSI", "AMBER14", "SOLVENTS", "alanine_dipeptide_system"]

ALANINE_DIPEPTIDE_PDB = Path(__file__).with_name("alanine-dipeptide.pdb")
AMBER14 = "amber14-all.xml"
#: implicit-solvent force-field files per solvent name
SOLVENTS = {"vacuum": [], "obc": ["implicit/obc2.xml"], "obc2": ["implicit/obc2.xml"], "gbn2": ["implicit/gbn2.xml"]}
#: atom indices (0-based, PDB order) of the backbone dihedrals phi = C(ACE)-N-CA-C and psi = N-CA-C-N(NME)
ALANINE_PHI = (1, 6, 7, 9)
ALANINE_PSI = (6, 7, 9, 16)


def alanine_dipeptide_system(solvent: str = "vacuum", constraints: str | None = "HBonds"):
    """``(pdb, system)``: the committed PDB (``openmm.app.PDBFile``) and its amber14 ``System``, no cutoff.

    Args:
        solvent: ``vacuum``, ``obc``/``obc2`` (OBC2 generalised Born) or ``gbn2``.
        constraints: ``"HBonds"`` (bonds to hydrogen rigid, as for MD with 1-2 fs steps) or ``None`` (every
            degree of freedom free: the density of a Boltzmann-sampling target).
    """
    from openmm import app

    from compscope.errors import ConfigError

    if solvent not in SOLVENTS:
        raise ConfigError(f"unknown solvent {solvent!r}", hint=f"choose one of {', '.join(SOLVENTS)}")
    modes = {None: None, "none": None, "hbonds": app.HBonds, "allbonds": app.AllBonds, "hangles": app.HAngles}
    key = constraints.lower() if isinstance(constraints, str) else constraints
    if key not in modes:
        raise ConfigError(f"unknown constraints {constraints!r}", hint="use None, 'HBonds', 'AllBonds' or 'HAngles'")
    pdb = app.PDBFile(str(ALANINE_DIPEPTIDE_PDB))
    ff = app.ForceField(AMBER14, *SOLVENTS[solvent])
    system = ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=modes[key])
    return pdb, system
