"""SystemEnergy (numba) computes the same energy and forces as OpenMM's Reference platform: alanine dipeptide on
random conformations (float64 to 1e-9 relative, float32 to its own precision), a synthetic system with torsion
phases that are not 0 or pi (the dihedral's sign convention), forces against finite differences, refusals."""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest

from compscope.errors import CompscopeError
from compscope.integrations.openmm_numba import OpenMMSystemError, SystemEnergy
from compscope.integrations.openmm_systems import alanine_dipeptide_system


def _reference(system, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ctx = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    e, f = [], []
    for xx in x:
        ctx.setPositions(xx)
        st = ctx.getState(getEnergy=True, getForces=True)
        e.append(st.getPotentialEnergy()._value)
        f.append(st.getForces(asNumpy=True)._value)
    return np.array(e), np.array(f)


@pytest.fixture(scope="module")
def ala2():
    pdb, system = alanine_dipeptide_system(constraints=None)
    x0 = np.asarray(pdb.getPositions(asNumpy=True)._value)
    rng = np.random.default_rng(0)
    # thermal-size and large perturbations, plus rigid pivots of whole groups (far from the PDB structure)
    x = x0[None] + np.concatenate([0.005 * rng.standard_normal((6, 22, 3)), 0.02 * rng.standard_normal((6, 22, 3))])
    return system, x, _reference(system, x)


def test_alanine_dipeptide_float64_equals_openmm(ala2):
    system, x, (e_ref, f_ref) = ala2
    se = SystemEnergy(system)
    assert se.n_terms == {"bonds": 21, "angles": 36, "torsions": 42, "pairs": 174}
    e, f = se.energy_forces(x)
    assert e.dtype == np.float64 and f.shape == x.shape
    np.testing.assert_allclose(e, e_ref, rtol=1e-9, atol=1e-9 * np.abs(e_ref).max())
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-9 * np.abs(f_ref).max())
    np.testing.assert_array_equal(se.energy(x), e)  # the energy-only pass is the same arithmetic
    e1, f1 = se.energy_forces(x[3])  # one configuration without a batch axis
    assert e1 == pytest.approx(e[3], rel=1e-14) and f1.shape == (22, 3)


def test_alanine_dipeptide_float32(ala2):
    system, x, (e_ref, f_ref) = ala2
    e, f = SystemEnergy(system).energy_forces(x.astype(np.float32))
    assert e.dtype == np.float32 and f.dtype == np.float32
    # float32 sums a few hundred terms of up to ~1e3 kJ/mol: about 1e-6 of the energy scale
    scale = np.abs(e_ref).max()
    np.testing.assert_allclose(e, e_ref, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-5 * np.abs(f_ref).max())


def _synthetic_system(n: int = 6, seed: int = 0):
    """A chain of 6 particles with every supported force, torsions with arbitrary phases and periodicities, and
    nonbonded exceptions (excluded and scaled pairs)."""
    rng = np.random.default_rng(seed)
    s = mm.System()
    for _ in range(n):
        s.addParticle(12.0)
    b, a, t = mm.HarmonicBondForce(), mm.HarmonicAngleForce(), mm.PeriodicTorsionForce()
    for i in range(n - 1):
        b.addBond(i, i + 1, 0.15, 3e4)
    for i in range(n - 2):
        a.addAngle(i, i + 1, i + 2, 1.9, 400.0)
    for i in range(n - 3):
        for per in (1, 2, 3):
            t.addTorsion(i, i + 1, i + 2, i + 3, per, float(rng.uniform(-np.pi, np.pi)), float(rng.uniform(1, 5)))
    nb = mm.NonbondedForce()
    nb.setNonbondedMethod(mm.NonbondedForce.NoCutoff)
    for _ in range(n):
        nb.addParticle(float(rng.uniform(-0.5, 0.5)), float(rng.uniform(0.2, 0.35)), float(rng.uniform(0.1, 1.0)))
    nb.addException(0, 1, 0.0, 0.1, 0.0)
    nb.addException(0, 3, 0.05, 0.3, 0.2)
    for f in (b, a, t, nb, mm.CMMotionRemover()):
        s.addForce(f)
    x0 = np.array([[0.15 * i, 0.1 * (i % 2), 0.05 * ((i // 2) % 2)] for i in range(n)], dtype=float)
    x = x0[None] + 0.03 * rng.standard_normal((20, n, 3))
    return s, x


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 3e-5)])
def test_synthetic_system_phases_and_exceptions(dtype, tol):
    system, x = _synthetic_system()
    e_ref, f_ref = _reference(system, x)
    e, f = SystemEnergy(system).energy_forces(x.astype(dtype))
    np.testing.assert_allclose(e, e_ref, rtol=0, atol=tol * np.abs(e_ref).max())
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=tol * np.abs(f_ref).max())


def test_forces_are_minus_gradient():
    system, x = _synthetic_system(seed=1)
    se = SystemEnergy(system)
    _, f = se.energy_forces(x[:2])
    h = 1e-6
    for b in range(2):
        for i in range(6):
            for k in range(3):
                xp, xm = x[b].copy(), x[b].copy()
                xp[i, k] += h
                xm[i, k] -= h
                fd = -(se.energy(xp) - se.energy(xm)) / (2 * h)
                assert fd == pytest.approx(f[b, i, k], rel=1e-5, abs=1e-3), (b, i, k)


def test_refuses_what_it_does_not_implement():
    system, _ = _synthetic_system()
    cut = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    [f for f in cut.getForces() if isinstance(f, mm.NonbondedForce)][0].setNonbondedMethod(
        mm.NonbondedForce.CutoffNonPeriodic)
    with pytest.raises(OpenMMSystemError, match="cutoff"):
        SystemEnergy(cut)
    other = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    other.addForce(mm.CustomExternalForce("x^2"))
    with pytest.raises(OpenMMSystemError, match="CustomExternalForce") as err:
        SystemEnergy(other)
    assert isinstance(err.value, CompscopeError) and err.value.hint
    with pytest.raises(OpenMMSystemError, match="particles"):
        SystemEnergy(system).energy(np.zeros((2, 5, 3)))
