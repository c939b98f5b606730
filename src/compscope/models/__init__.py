"""Assembled networks by name: the force-field potential and its presets; model files (:mod:`.artifacts`)."""

from . import artifacts
from ._forcefield import EquivariantPotential, UnknownElementError
from ._registry import MODEL_CLASSES, PRESETS, build_model

__all__ = ["artifacts", "EquivariantPotential", "UnknownElementError", "MODEL_CLASSES", "PRESETS", "build_model"]
