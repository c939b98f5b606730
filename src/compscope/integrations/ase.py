"""ASE calculator for compscope potentials (and committees of them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator as _ASECalculator
from ase.calculators.calculator import all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.models.artifacts import load_model


def _as_model(model, dtype):
    if isinstance(model, (str, Path)):
        return load_model(model, dtype=dtype)
    return model


class Calculator(_ASECalculator):
    """ASE calculator: ``Calculator("model.pt")`` (package), ``Calculator("model.jit.pt")`` (compiled) or a module.

    Implements ``energy``, ``free_energy``, ``forces``, ``stress`` (Voigt, eV/Å^3, periodic cells only) and
    ``energies`` (per atom). With several models (a committee) the results are their means and
    ``results["forces_std"]`` (N,) / ``results["energy_std"]`` hold the spread.

    Args:
        model: path(s) or module(s) following the potential contract.
        dtype: ``"float64"`` (default) or ``"float32"``.
        energy_units_to_eV / length_units_to_A: unit conversion for models trained in other units.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, model, dtype: str = "float64", energy_units_to_eV: float = 1.0, length_units_to_A: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.dtype = getattr(torch, dtype)
        models = model if isinstance(model, (list, tuple)) else [model]
        self.models = [_as_model(m, self.dtype) for m in models]
        self.cutoff = max(float(m.cutoff) for m in self.models)
        self.energy_units_to_eV = energy_units_to_eV
        self.length_units_to_A = length_units_to_A

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> Calculator:
        """One-line constructor from a packaged (``.pt``) or compiled (``.jit.pt``) model file."""
        return cls(path, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.positions *= self.length_units_to_A
        a.cell = a.cell.array * self.length_units_to_A
        periodic = bool(np.any(a.pbc))
        graph = AtomicGraph.from_atoms(a, self.cutoff, energy_key=None, forces_key=None, stress_key=None,
                                       dtype=self.dtype)
        want_stress = "stress" in properties and periodic
        energies, forces, stresses, node_e = [], [], [], []
        for m in self.models:
            out = m(graph, compute_forces=True, compute_stress=want_stress)
            energies.append(float(out[K.ENERGY][0].detach()) * self.energy_units_to_eV)
            forces.append(out[K.FORCES].detach().double().numpy() * self.energy_units_to_eV / self.length_units_to_A)
            node_e.append(out[K.NODE_ENERGY].detach().double().numpy() * self.energy_units_to_eV)
            if want_stress:
                stresses.append(out[K.STRESS][0].detach().double().numpy() * self.energy_units_to_eV
                                / self.length_units_to_A**3)
        f = np.mean(forces, axis=0)
        self.results = {
            "energy": float(np.mean(energies)),
            "free_energy": float(np.mean(energies)),
            "forces": f,
            "energies": np.mean(node_e, axis=0),
        }
        if len(self.models) > 1:
            self.results["energy_std"] = float(np.std(energies))
            self.results["forces_std"] = np.sqrt(np.mean(np.sum((np.array(forces) - f) ** 2, axis=-1), axis=0))
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.mean(stresses, axis=0))
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a periodic cell (atoms.pbc)")
