"""The physics kit over every potential class compscope ships, in float32 and float64: the learned
EquivariantPotential, its compiled (TorchScript) export, and the analytic pair potentials of ``compscope.md``.

Each gets equivariance (molecules and a periodic crystal, stress included), forces = -dE/dx and stress =
(1/V) dE/d(strain) by finite differences (float64), permutations, batching, separability, a smooth cutoff and
the isolated-atom limit (E0 of the species, zero force)."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from compscope.data import AtomicGraph, load_graphs
from compscope.forcefield import CompiledPotential, compile_model
from compscope.md.potentials import LennardJones, Morse, SumPotential
from compscope.models import build_model
from compscope.testing import check_potential

SPECIES = [1, 6, 8]
E0 = {1: -13.6, 6: -1029.5, 8: -2041.8}  # eV: realistic magnitudes, so float32 rounding of E0 is exercised
R_MAX = 4.0
DTYPES = [torch.float32, torch.float64]


def _learned(dtype):
    torch.manual_seed(0)
    m = build_model(preset="tiny", species=SPECIES, r_max=R_MAX, scale=0.5, atomic_energies=[E0[z] for z in SPECIES])
    with torch.no_grad():
        m.element_shift.copy_(torch.randn(len(SPECIES)) * 0.1)
    return m.to(dtype).eval()


def _compiled(dtype, tmp_path, ethanol_xyz):
    model = _learned(dtype)
    example = load_graphs(ethanol_xyz, R_MAX, index=":1")[0].to(dtype=dtype)
    path = tmp_path / f"m_{str(dtype)[6:]}.jit.pt"
    compile_model(model, example, path)
    return CompiledPotential(path)


def _analytic(kind):
    lj = LennardJones(epsilon=0.02, sigma=1.1, cutoff=R_MAX, r_on=3.0)
    morse = Morse(D=0.4, a=1.3, r0=1.3, cutoff=R_MAX, r_on=3.0)
    return {"lennard-jones": lj, "morse": morse, "sum": SumPotential([lj, morse])}[kind]


def _inputs(dtype, ethanol_xyz):
    graphs = [g.to(dtype=dtype) for g in load_graphs(ethanol_xyz, R_MAX, index=":2")]
    crystal = bulk("C", "diamond", a=3.57)
    crystal.rattle(0.05, seed=3)
    periodic = AtomicGraph.from_atoms(crystal, R_MAX, energy_key=None, forces_key=None, dtype=dtype)
    return graphs, periodic


def _ids(p):
    return str(p).replace("torch.", "")


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("kind", ["lennard-jones", "morse", "sum"])
def test_analytic_potentials(kind, dtype, ethanol_xyz):
    graphs, periodic = _inputs(dtype, ethanol_xyz)
    check_potential(_analytic(kind), graphs, z_pair=(6, 8), periodic=periodic, isolated=dict.fromkeys(SPECIES, 0.0))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_learned_potential(dtype, ethanol_xyz):
    graphs, periodic = _inputs(dtype, ethanol_xyz)
    check_potential(_learned(dtype), graphs, z_pair=(6, 8), periodic=periodic)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_compiled_potential(dtype, ethanol_xyz, tmp_path):
    graphs, periodic = _inputs(dtype, ethanol_xyz)
    compiled = _compiled(dtype, tmp_path, ethanol_xyz)
    check_potential(compiled, graphs, z_pair=(6, 8), periodic=periodic)
    eager = _learned(dtype)  # and the export computes what the eager model computes
    for g in (AtomicGraph.collate(graphs), periodic):
        a, b = compiled(g, compute_stress=bool(g.pbc.any())), eager(g, compute_stress=bool(g.pbc.any()))
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        torch.testing.assert_close(a["energy"].double(), b["energy"].double(), rtol=tol, atol=tol)
        torch.testing.assert_close(a["forces"], b["forces"], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_learned_potential_isolated_atoms(dtype, ethanol_xyz):
    graphs, _ = _inputs(dtype, ethanol_xyz)
    check_potential(_learned(dtype), graphs[:1], isolated=E0)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_compiled_potential_isolated_atoms(dtype, ethanol_xyz, tmp_path):
    graphs, _ = _inputs(dtype, ethanol_xyz)
    check_potential(_compiled(dtype, tmp_path, ethanol_xyz), graphs[:1], isolated=E0)


def test_isolated_atom_check_catches_a_wrong_e0():
    """A potential whose lone atoms are off by 1 meV fails the check (it can fail)."""
    from compscope.testing import assert_isolated_atoms

    lj = _analytic("lennard-jones").double()
    with pytest.raises(AssertionError, match="isolated atoms"):
        assert_isolated_atoms(lj, {1: 0.0, 6: 1e-3})
    assert_isolated_atoms(lj, {1: 0.0, 6: 0.0})
