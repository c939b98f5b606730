"""Assembled networks by name: the force-field potential and its presets, the CG potential; model files
(:mod:`.artifacts`)."""

from . import artifacts
from ._cg import CGFeatureNet, CGPotential, CGPrior, bond_angles, bond_lengths, dihedral_angles
from ._forcefield import EquivariantPotential, UnknownElementError
from ._registry import MODEL_CLASSES, PRESETS, build_model

__all__ = ["artifacts", "CGFeatureNet", "CGPotential", "CGPrior", "bond_angles", "bond_lengths", "dihedral_angles",
           "EquivariantPotential", "UnknownElementError", "MODEL_CLASSES", "PRESETS", "build_model"]
