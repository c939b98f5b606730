"""Assembled networks by name: the force-field potential and its presets, the CG potential; model files
(:mod:`.artifacts`)."""

from . import artifacts
from ._blocks import (
    DEFAULT_BLOCK_MEMORY_GIB,
    BlockError,
    BlockPlan,
    auto_block_atoms,
    block_evaluate,
    bytes_per_evaluated_atom,
    layers_of_model,
    local_graph,
    plan_blocks,
)
from ._cg import CGFeatureNet, CGPotential, CGPrior, bond_angles, bond_lengths, dihedral_angles
from ._forcefield import EquivariantPotential, UnknownElementError
from ._registry import MODEL_CLASSES, PRESETS, build_model

__all__ = ["DEFAULT_BLOCK_MEMORY_GIB", "BlockError", "BlockPlan", "auto_block_atoms", "block_evaluate",
           "bytes_per_evaluated_atom", "layers_of_model", "local_graph", "plan_blocks", "artifacts", "CGFeatureNet",
           "CGPotential", "CGPrior", "bond_angles", "bond_lengths", "dihedral_angles", "EquivariantPotential",
           "UnknownElementError", "MODEL_CLASSES", "PRESETS", "build_model"]
