"""OpenMM targets: energies equal OpenMM's in kT, forces are -grad u (finite differences, kT/Å), autograd goes
through OpenMM's forces, atom-count and NaN errors; dihedral angles on known geometries."""

from __future__ import annotations

import math
import pickle

import numpy as np
import openmm as mm
import openmm.unit as unit
import pytest
import torch

from compscope.errors import CompscopeError
from compscope.integrations.openmm_systems import ALANINE_DIPEPTIDE_PDB, alanine_dipeptide_system
from compscope.sampling import (
    ALA2_PHI,
    ALA2_PSI,
    OpenMMEnergyError,
    OpenMMTarget,
    SamplingInputError,
    alanine_dipeptide,
    dihedral_angles,
    get_target,
)


@pytest.fixture(scope="module")
def ala2():
    return alanine_dipeptide()


@pytest.fixture(scope="module")
def frames():
    """The committed structure and four thermally perturbed copies (Å), float64."""
    pdb, _ = alanine_dipeptide_system("vacuum")
    x0 = np.asarray(pdb.positions.value_in_unit(unit.angstrom))
    rng = np.random.default_rng(0)
    return torch.as_tensor(np.concatenate([x0[None], x0 + 0.05 * rng.standard_normal((4, 22, 3))]))


def _openmm_energy_kT(x_A: np.ndarray, temperature: float = 300.0) -> float:
    _, system = alanine_dipeptide_system("vacuum", constraints=None)
    ctx = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x_A * 0.1)
    e = ctx.getState(getEnergy=True).getPotentialEnergy()
    return e / (unit.MOLAR_GAS_CONSTANT_R * temperature * unit.kelvin)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_energy_equals_openmm_in_kT(ala2, frames, dtype):
    u = ala2.energy(frames.to(dtype))
    assert u.dtype == dtype and u.shape == (5,)
    ref = np.array([_openmm_energy_kT(x) for x in frames.numpy()])
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    np.testing.assert_allclose(u.double().numpy(), ref, rtol=tol, atol=tol)
    # kT at 300 K is 2.494 kJ/mol: another temperature scales the reduced energy by T ratio
    hot = alanine_dipeptide(temperature=600.0)
    np.testing.assert_allclose(hot.energy(frames).numpy(), ref / 2, rtol=1e-9)
    assert get_target("ala2").config()["system_sha256"] == ala2.config()["system_sha256"]


def test_force_is_minus_gradient_by_finite_differences(ala2, frames):
    x = frames[1:3]
    u, f = ala2.energy_and_force(x)
    assert f.shape == (2, 22, 3) and f.dtype == torch.float64
    h = 1e-4  # Å
    rng = np.random.default_rng(1)
    for b in range(2):
        for i, k in zip(rng.integers(0, 22, 6), rng.integers(0, 3, 6)):
            xp, xm = x[b:b + 1].clone(), x[b:b + 1].clone()
            xp[0, i, k] += h
            xm[0, i, k] -= h
            fd = -(ala2.energy(xp) - ala2.energy(xm)).item() / (2 * h)
            assert fd == pytest.approx(f[b, i, k].item(), rel=1e-5, abs=1e-5), (b, i, k)
    # autograd through the energy applies the same forces (flows train on it)
    leaf = x.clone().requires_grad_(True)
    ala2.energy(leaf).sum().backward()
    torch.testing.assert_close(-leaf.grad, f)
    # and the shared helper agrees
    u2, f2 = ala2.energy_and_force(x.float())
    assert f2.dtype == torch.float32
    np.testing.assert_allclose(f2.double().numpy(), f.numpy(), rtol=1e-3, atol=1e-2)


def test_forces_vanish_near_the_minimum_and_target_pickles(ala2):
    pdb, system = alanine_dipeptide_system("vacuum", constraints=None)
    ctx = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pdb.positions)
    mm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 0)
    xmin = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    clone = pickle.loads(pickle.dumps(ala2))  # contexts are per thread/process; the target travels as XML
    _, f = clone.energy_and_force(torch.as_tensor(np.asarray(xmin))[None])
    assert f.abs().max() < 0.05  # kT/Å


def test_atom_count_mismatch_is_refused(ala2, frames):
    _, system = alanine_dipeptide_system("vacuum")
    with pytest.raises(CompscopeError, match="22 particles but the samples have 21 atoms") as err:
        OpenMMTarget(system, n_particles=21)
    assert err.value.hint and "topology" in err.value.hint
    with pytest.raises(SamplingInputError, match="do not match the OpenMM system of 22 particles") as err:
        ala2.energy(frames[:, :21])
    assert "same atoms" in err.value.hint
    with pytest.raises(SamplingInputError, match="22 particles"):
        ala2.energy_and_force(torch.zeros(2, 23, 3, dtype=torch.float64))


def test_nan_positions_and_overlaps_are_refused(ala2, frames):
    x = frames.clone()
    x[2, 5, 1] = float("nan")
    with pytest.raises(SamplingInputError, match=r"NaN or inf \(first bad configurations: \[2\]\)") as err:
        ala2.energy(x)
    assert err.value.hint
    with pytest.raises(SamplingInputError, match="NaN"):
        ala2.energy_and_force(x)
    with pytest.raises(SamplingInputError, match="temperature must be positive"):
        alanine_dipeptide(temperature=0.0)


def test_overlapping_atoms_get_infinite_energy_and_are_counted(frames):
    x = frames[:3].clone()
    x[1, 3] = x[1, 0]  # two atoms on top of each other: OpenMM's Coulomb term is not finite
    t = alanine_dipeptide()
    u, f = t.energy_and_force(x)
    assert torch.isinf(u[1]) and u[1] > 0 and torch.isfinite(u[[0, 2]]).all()
    assert (f[1] == 0).all() and torch.isfinite(f).all() and t.n_nonfinite == 1
    assert torch.exp(-(u - u[0])).isfinite().all()  # weights: exactly zero, never NaN
    with pytest.raises(OpenMMEnergyError, match=r"non-finite energy or force for configurations \[1\]") as err:
        alanine_dipeptide(nonfinite="raise").energy(x)
    assert "nonfinite='inf'" in err.value.hint


def test_dihedral_angles_on_known_geometries():
    # p0 on +x, axis p1 -> p2 along +z, p3 rotated by theta about z: the dihedral is theta
    for theta in (0.3, -1.2, math.pi / 2, 2.9, -2.9):
        p = np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1.5], [math.cos(theta), math.sin(theta), 1.5]])
        assert dihedral_angles(p, (0, 1, 2, 3)) == pytest.approx(theta, abs=1e-12)
        # invariant under rotation and translation, float32 and torch
        q = torch.as_tensor(p @ _rotation(0.7, 1.1).T + 3.0, dtype=torch.float32)
        assert float(dihedral_angles(q, (0, 1, 2, 3))) == pytest.approx(theta, abs=1e-5)
        assert dihedral_angles(p[None, [3, 2, 1, 0]], (0, 1, 2, 3))[0] == pytest.approx(theta, abs=1e-12)
    both = dihedral_angles(np.zeros((4, 22, 3)) + np.arange(66).reshape(22, 3) ** 0.5, [ALA2_PHI, ALA2_PSI])
    assert both.shape == (4, 2)
    with pytest.raises(SamplingInputError, match="out of range"):
        dihedral_angles(np.zeros((2, 4, 3)), (0, 1, 2, 4))


def test_committed_alanine_dipeptide_is_the_l_enantiomer_in_c7eq():
    from ase.io import read

    x = read(ALANINE_DIPEPTIDE_PDB).get_positions()
    phi, psi = dihedral_angles(x, [ALA2_PHI, ALA2_PSI])
    assert -3.0 < phi < 0.0  # L-alanine sits at negative phi (beta / C7eq region)


def _rotation(a: float, b: float) -> np.ndarray:
    ca, sa, cb, sb = math.cos(a), math.sin(a), math.cos(b), math.sin(b)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
    return rz @ rx


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numba_platform_equals_reference(ala2, frames, dtype):
    fast = alanine_dipeptide(platform="numba")
    u, f = fast.energy_and_force(frames.to(dtype))
    u_ref, f_ref = ala2.energy_and_force(frames)
    assert u.dtype == dtype and f.shape == f_ref.shape
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(u.double(), u_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(f.double(), f_ref, rtol=tol, atol=tol * f_ref.abs().max().item())
    assert fast.config()["platform"] == "numba" and fast.config()["system_sha256"] == ala2.config()["system_sha256"]
    torch.testing.assert_close(pickle.loads(pickle.dumps(fast)).energy(frames), u_ref, rtol=1e-9, atol=1e-9)
    far = frames[:1].clone()
    far[0, 1] = far[0, 0]  # two atoms on top of each other: a non-finite energy, counted, u = inf
    assert torch.isinf(fast.energy_and_force(far)[0]).all() and fast.n_nonfinite == 1
