"""The one ASE calculator: agreement with the MD force path, finite differences, committees, unit options."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.io import read

from compscope.errors import ConfigError
from compscope.integrations.ase import Calculator
from compscope.md import LangevinBAOAB, init_state, state_to_atoms
from compscope.md.potentials import LennardJones, Morse, SumPotential
from compscope.models import build_model
from compscope.models.artifacts import export_compiled

ETHANOL = Path(__file__).resolve().parents[1] / "fixtures" / "forcefield" / "ethanol_test_20.xyz"


def _tiny(dtype=torch.float64, seed=0, species=(1, 6, 8)):
    torch.manual_seed(seed)
    return build_model(preset="tiny", species=list(species), r_max=4.0, avg_num_neighbors=6.0).to(dtype)


def _compare_with_md(pot, atoms_list, dtype, tol_e, tol_f, steps=8):
    """Step a batch of replicas with MD (Verlet-skin neighbour lists, wrapping), then evaluate every replica's
    frame afresh with the calculator: same energies and forces."""
    state, evaluate = init_state(pot, atoms_list, temperature_K=300.0, seed=0, dtype=dtype)
    integ = LangevinBAOAB(0.5, 300.0, friction=0.01, seed=0)
    state = integ.init(state)
    for _ in range(steps):
        state = integ.apply(state, evaluate)
    calc = Calculator(pot, dtype=dtype)
    for k, atoms in enumerate(state_to_atoms(state)):
        e_md, f_md = atoms.get_potential_energy(), atoms.get_forces()  # what the MD state holds
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - e_md) <= tol_e * max(1.0, abs(e_md)), k
        np.testing.assert_allclose(atoms.get_forces(), f_md, atol=tol_f)
    return state


@pytest.mark.parametrize("dtype,tol_e,tol_f", [(torch.float64, 1e-12, 1e-10), (torch.float32, 1e-6, 2e-4)],
                         ids=["float64", "float32"])
def test_learned_model_same_in_md_and_ase(dtype, tol_e, tol_f):
    frames = read(ETHANOL, ":2")
    _compare_with_md(_tiny(dtype), frames, dtype, tol_e, tol_f)


def test_compiled_model_same_in_md_and_ase(tmp_path):
    path = export_compiled(_tiny(), tmp_path / "m.jit.pt")
    from compscope.models.artifacts import load_model

    _compare_with_md(load_model(path), read(ETHANOL, ":2"), torch.float64, 1e-12, 1e-10)


def test_analytic_potentials_same_in_md_and_ase(lj, ar_crystal, ar_cluster):
    """Periodic crystal (positions wrapped into the cell by MD) and a cluster, with a sum of two potentials."""
    state = _compare_with_md(lj, [ar_crystal, ar_crystal], torch.float64, 1e-12, 1e-12, steps=30)
    assert float(state.positions.abs().max()) < 30
    both = SumPotential([lj, Morse(D=0.01, a=1.2, r0=3.8, cutoff=6.0, atomic_numbers=[18])])
    _compare_with_md(both, [ar_cluster], torch.float64, 1e-12, 1e-12)


def test_finite_differences_forces_stress_and_per_atom_energies(lj, ar_crystal):
    atoms = ar_crystal.copy()
    atoms.calc = Calculator(lj)
    f = atoms.get_forces()
    num = calculate_numerical_forces(atoms, eps=1e-5)
    assert np.abs(f - num).max() < 1e-8
    s = atoms.get_stress()
    assert s.shape == (6,)
    assert np.abs(s - calculate_numerical_stress(atoms, eps=1e-6)).max() < 1e-8
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
    cluster = atoms.copy()
    cluster.pbc = False
    cluster.calc = Calculator(lj)
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        cluster.get_stress()


def test_learned_model_stress_float32_and_float64():
    atoms = bulk("C", "diamond", a=3.57) * (2, 1, 1)
    atoms.rattle(0.05, seed=0)
    model = _tiny(species=(6,))
    atoms.calc = Calculator(model)
    s64 = atoms.get_stress()
    assert np.abs(s64 - calculate_numerical_stress(atoms, eps=1e-5)).max() < 1e-6
    s32 = Calculator(copy.deepcopy(model).float(), dtype="float32").get_stress(atoms)
    assert np.abs(s32 - s64).max() < 1e-4 * max(1.0, np.abs(s64).max())


def test_committee_mean_and_spread():
    atoms = read(ETHANOL, 0)
    members = [_tiny(seed=s) for s in range(3)]
    single = [Calculator(m) for m in members]
    e = np.array([c.get_potential_energy(atoms) for c in single])
    f = np.array([c.get_forces(atoms) for c in single])  # (3, N, 3)
    atoms.calc = Calculator(members)
    assert atoms.get_potential_energy() == pytest.approx(e.mean(), abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), f.mean(0), atol=1e-12)
    res = atoms.calc.results
    assert res["energy_std"] == pytest.approx(e.std(), abs=1e-10) and res["energy_std"] > 0
    dev = np.linalg.norm(f - f.mean(0), axis=-1)  # (3, N)
    np.testing.assert_allclose(res["forces_std"], np.sqrt((dev**2).mean(0)), atol=1e-12)
    one = Calculator(members[:1])
    one.get_potential_energy(atoms)
    assert "energy_std" not in one.results and "forces_std" not in one.results


def test_unit_options_convert_a_model_in_kj_mol_and_nm(lj, ar_crystal):
    """The same Lennard-Jones written in kJ/mol and nm gives eV and Å results through the unit options."""
    kj_mol = units.kJ / units.mol  # eV
    lj_nm = LennardJones(epsilon=lj.epsilon / kj_mol, sigma=lj.sigma / 10, cutoff=lj.cutoff / 10,
                         r_on=lj.r_on / 10)
    ref = ar_crystal.copy()
    ref.calc = Calculator(lj)
    conv = ar_crystal.copy()
    conv.calc = Calculator(lj_nm, energy_units_to_eV=kj_mol, length_units_to_A=10.0)
    assert conv.get_potential_energy() == pytest.approx(ref.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(conv.get_forces(), ref.get_forces(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(conv.get_stress(), ref.get_stress(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(conv.get_positions(), ar_crystal.get_positions())  # the user's atoms untouched


def test_bad_arguments_say_what_to_pass(tmp_path):
    with pytest.raises(ConfigError, match="dtype"):
        Calculator(_tiny(), dtype="float16")
    with pytest.raises(ConfigError, match="not a compscope potential") as err:
        Calculator(torch.nn.Linear(3, 1))
    assert ".jit.pt" in err.value.hint
    with pytest.raises(ConfigError, match="at least one model"):
        Calculator([])
    with pytest.raises(FileNotFoundError):
        Calculator(tmp_path / "missing.pt")
