"""An ASE calculator around any compscope potential (the reference path for bridges and tests)."""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from compscope.data import AtomicGraph
from compscope.data import keys as K

__all__ = ["PotentialCalculator"]


class PotentialCalculator(Calculator):
    """ASE calculator for a module under the compscope force-field contract.

    Args:
        potential: module with ``cutoff`` and ``forward(graph, compute_forces, compute_stress) -> dict``.
        dtype: float dtype of the graph handed to the potential.

    Notes:
        ``stress`` is returned in ASE's Voigt order (xx, yy, zz, yz, xz, xy), eV/Å^3, for periodic cells.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential: torch.nn.Module, dtype: torch.dtype = torch.float64, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.dtype = dtype

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        graph = AtomicGraph.from_atoms(self.atoms, float(self.potential.cutoff), dtype=self.dtype)
        want_stress = "stress" in properties and bool(self.atoms.pbc.any())
        out = self.potential(graph, compute_forces=True, compute_stress=want_stress)
        e = float(out[K.ENERGY].detach().double().sum())
        self.results = {
            "energy": e,
            "free_energy": e,
            "forces": out[K.FORCES].detach().double().cpu().numpy(),
        }
        if want_stress:
            s = out[K.STRESS][0].detach().double().cpu().numpy()
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
