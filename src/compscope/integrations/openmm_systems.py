"""Classical OpenMM systems shared by task packages: alanine dipeptide (ACE-ALA-NME) with amber14.

One builder, :func:`alanine_dipeptide_system`, for every package that needs the molecule: the MD reference data
(:mod:`compscope.md.reference`, bonds to hydrogen constrained) and the Boltzmann-sampling target and its
replica-exchange reference (:mod:`compscope.sampling`, unconstrained). The committed ``alanine-dipeptide.pdb``
lives next to this module (provenance: ``compscope/md/reference/_build_pdb.py``). Importing this module does
not import OpenMM. Units are OpenMM's (nm, kJ/mol) here; callers convert at their boundary.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ALANINE_DIPEPTIDE_PDB", "ALANINE_PHI", "ALANINE_PSI", "AMBER14", "SOLVENTS", "alanine_dipeptide_system",
           "repartition_hydrogen_mass"]

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


def repartition_hydrogen_mass(system, topology, hydrogen_mass: float = 3.024):
    """Hydrogen-mass repartitioning in place: every hydrogen bonded to a heavy atom gets ``hydrogen_mass`` amu and
    its heavy partner loses the difference, so the total mass (and the Boltzmann distribution over positions) is
    unchanged while the fastest vibrations slow down (4 fs steps with bonds to hydrogen constrained).

    Returns ``system``. Refuses a mass that would leave a heavy atom with less than 1 amu.
    """
    from openmm import app, unit

    from compscope.errors import ConfigError

    if not hydrogen_mass > 0:
        raise ConfigError(f"hydrogen mass must be positive, got {hydrogen_mass}", hint="e.g. 3.024 amu")
    for a, b in topology.bonds():
        if a.element == app.element.hydrogen:
            a, b = b, a
        if b.element != app.element.hydrogen or a.element == app.element.hydrogen:
            continue
        dm = float(hydrogen_mass) - system.getParticleMass(b.index).value_in_unit(unit.dalton)
        heavy = system.getParticleMass(a.index).value_in_unit(unit.dalton) - dm
        if heavy < 1.0:
            raise ConfigError(f"hydrogen mass {hydrogen_mass} amu leaves atom {a.index} ({a.element.symbol}) with "
                              f"{heavy:.3f} amu", hint="use a smaller hydrogen mass (3.024 amu is usual)")
        system.setParticleMass(b.index, float(hydrogen_mass) * unit.dalton)
        system.setParticleMass(a.index, heavy * unit.dalton)
    return system
