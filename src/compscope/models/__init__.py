"""Assembled networks by name: the force-field potential and its presets."""

from ._forcefield import EquivariantPotential, UnknownElementError
from ._registry import MODEL_CLASSES, PRESETS, build_model

__all__ = ["EquivariantPotential", "UnknownElementError", "MODEL_CLASSES", "PRESETS", "build_model"]
