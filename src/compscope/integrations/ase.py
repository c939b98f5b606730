"""The one ASE calculator for compscope potentials: model files or modules, committees, unit options.

ASE works in eV and Å; a model trained in other units is converted here, at the boundary: positions and cell are
divided by ``length_units_to_A`` before the model sees them, and its energies, forces and stress are multiplied
by ``energy_units_to_eV``, ``energy_units_to_eV / length_units_to_A`` and ``energy_units_to_eV /
length_units_to_A**3``. Stress is returned in ASE's Voigt order (xx, yy, zz, yz, xz, xy) and sign.

Examples:
    >>> import torch
    >>> from ase.build import molecule
    >>> from compscope.models import build_model
    >>> _ = torch.manual_seed(0)
    >>> model = build_model(preset="tiny", species=[1, 8], r_max=3.0).double()
    >>> atoms = molecule("H2O")
    >>> atoms.calc = Calculator([model, model])  # a committee (of two equal members here)
    >>> atoms.get_forces().shape, atoms.calc.results["energy_std"]
    ((3, 3), 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator as _ASECalculator
from ase.calculators.calculator import PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.errors import ConfigError
from compscope.models.artifacts import load_model

__all__ = ["Calculator"]


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"Calculator dtype {dtype!r} is not supported", hint="use 'float64' or 'float32'")
    return getattr(torch, dtype)


def _as_model(model, dtype: torch.dtype) -> torch.nn.Module:
    if isinstance(model, (str, Path)):
        model = load_model(model, dtype=dtype)
    if not hasattr(model, "cutoff"):
        raise ConfigError(f"a {type(model).__name__} is not a compscope potential (it has no `cutoff`)",
                          hint="pass a model file (.pt, .jit.pt, .ckpt, run folder) or a module with `cutoff` and "
                               "forward(graph, compute_forces, compute_stress)")
    return model


class Calculator(_ASECalculator):
    """ASE calculator: ``Calculator("model.pt")``, ``Calculator("model.jit.pt")``, a module, or a list (committee).

    Implements ``energy``, ``free_energy``, ``forces``, ``stress`` (Voigt, eV/Å^3, cells periodic in at least one
    direction) and ``energies`` (per atom, when the model returns them). With several models (a committee) the
    results are their means, and the spread is the uncertainty: ``results["energy_std"]`` (eV) and
    ``results["forces_std"]`` (N,) (eV/Å, root mean square over members of each atom's force deviation).

    Args:
        model: a model file (see :func:`compscope.models.artifacts.load_model`), a module under the force-field
            contract (``cutoff`` and ``forward(graph, compute_forces, compute_stress) -> dict``), or a list of
            them (a committee; each member sees the graph of the largest cutoff and ignores edges beyond its own).
        dtype: ``"float64"`` (default), ``"float32"`` or a ``torch.dtype``: of the graph, and of model files.
        energy_units_to_eV: the model's energy unit in eV (e.g. ``ase.units.kJ / ase.units.mol``).
        length_units_to_A: the model's length unit in Å (e.g. ``10.0`` for nm).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, model, dtype: str | torch.dtype = "float64", energy_units_to_eV: float = 1.0,
                 length_units_to_A: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.dtype = _dtype(dtype)
        members = model if isinstance(model, Sequence) and not isinstance(model, str) else [model]
        if not members:
            raise ConfigError("Calculator needs at least one model", hint="pass a model file or a list of them")
        self.models = [_as_model(m, self.dtype) for m in members]
        self.cutoff = max(float(m.cutoff) for m in self.models)  # in the model's length unit
        if energy_units_to_eV <= 0 or length_units_to_A <= 0:
            raise ConfigError("unit factors must be positive",
                              hint="energy_units_to_eV is the model's energy unit in eV, length_units_to_A its "
                                   "length unit in Å")
        self.energy_units_to_eV = float(energy_units_to_eV)
        self.length_units_to_A = float(length_units_to_A)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> Calculator:
        """One-line constructor from a model file (package ``.pt``, compiled ``.jit.pt``, checkpoint, run folder)."""
        return cls(path, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = None
        a.positions /= self.length_units_to_A
        a.cell = a.cell.array / self.length_units_to_A
        want_stress = "stress" in properties
        if want_stress and not bool(np.any(a.pbc)):
            raise PropertyNotImplementedError("stress needs a cell that is periodic in some direction (atoms.pbc)")
        graph = AtomicGraph.from_atoms(a, self.cutoff, energy_key=None, forces_key=None, stress_key=None,
                                       dtype=self.dtype)
        e_unit, l_unit = self.energy_units_to_eV, self.length_units_to_A
        energies, forces, stresses, node_e = [], [], [], []
        for m in self.models:
            out = m(graph, compute_forces=True, compute_stress=want_stress)
            energies.append(float(out[K.ENERGY].detach().double().sum()) * e_unit)
            forces.append(out[K.FORCES].detach().double().cpu().numpy() * (e_unit / l_unit))  # (N, 3)
            if K.NODE_ENERGY in out:
                node_e.append(out[K.NODE_ENERGY].detach().double().cpu().numpy() * e_unit)  # (N,)
            if want_stress:
                stresses.append(out[K.STRESS][0].detach().double().cpu().numpy() * (e_unit / l_unit**3))
        f = np.mean(forces, axis=0)
        e = float(np.mean(energies))
        self.results = {"energy": e, "free_energy": e, "forces": f}
        if len(node_e) == len(self.models):
            self.results["energies"] = np.mean(node_e, axis=0)
        if len(self.models) > 1:
            self.results["energy_std"] = float(np.std(energies))
            self.results["forces_std"] = np.sqrt(np.mean(np.sum((np.asarray(forces) - f) ** 2, axis=-1), axis=0))
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.mean(stresses, axis=0))
