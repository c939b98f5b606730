"""SystemEnergy evaluates OpenMM's OBC2 implicit solvent (CustomGBForce of implicit/obc2.xml) as OpenMM's Reference
platform does: alanine dipeptide (amber14 + OBC2, unconstrained) on perturbed conformations in float64 (1e-9
relative) and float32, a synthetic cluster whose close pairs reach every branch of the descreening integral (an atom
buried in another's radius, L = or and L = |r - sr|), forces against finite differences, and refusal of every
CustomGBForce that is not that function (other dielectric, salt, OBC1, GBn2, an edited expression)."""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest
from openmm.app.internal.customgbforces import GBSAOBC1Force, GBSAOBC2Force

from compscope.integrations.openmm_numba import OpenMMSystemError, SystemEnergy
from compscope.integrations.openmm_systems import alanine_dipeptide_system


def _reference(system, x: np.ndarray, gb_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    system = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    for f in system.getForces():
        f.setForceGroup(1 if isinstance(f, mm.CustomGBForce) else 0)
    ctx = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    groups = {1} if gb_only else {0, 1}
    e, f = [], []
    for xx in x:
        ctx.setPositions(xx)
        st = ctx.getState(getEnergy=True, getForces=True, groups=groups)
        e.append(st.getPotentialEnergy()._value)
        f.append(st.getForces(asNumpy=True)._value)
    return np.array(e), np.array(f)


@pytest.fixture(scope="module")
def ala2():
    pdb, system = alanine_dipeptide_system("obc", constraints=None)
    x0 = np.asarray(pdb.getPositions(asNumpy=True)._value)
    rng = np.random.default_rng(3)
    x = x0[None] + np.concatenate([0.005 * rng.standard_normal((5, 22, 3)), 0.02 * rng.standard_normal((5, 22, 3))])
    return system, x, _reference(system, x), _reference(system, x, gb_only=True)


def test_alanine_dipeptide_obc2_float64_equals_openmm(ala2):
    system, x, (e_ref, f_ref), (e_gb, _) = ala2
    se = SystemEnergy(system)
    assert se.n_terms["gb_particles"] == 22
    # the solvation energy is a sizeable, configuration-dependent part of the total: not a constant offset
    assert np.abs(e_gb).min() > 20.0 and np.ptp(e_gb) > 1.0
    e, f = se.energy_forces(x)
    np.testing.assert_allclose(e, e_ref, rtol=1e-9, atol=1e-9 * np.abs(e_ref).max())
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-9 * np.abs(f_ref).max())
    np.testing.assert_array_equal(se.energy(x), e)
    # the vacuum part alone differs from the total by exactly OpenMM's GB energy
    vacuum = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    vacuum.removeForce([i for i, f in enumerate(vacuum.getForces()) if isinstance(f, mm.CustomGBForce)][0])
    np.testing.assert_allclose(e - SystemEnergy(vacuum).energy(x), e_gb, rtol=1e-9)


def test_alanine_dipeptide_obc2_float32(ala2):
    system, x, (e_ref, f_ref), _ = ala2
    e, f = SystemEnergy(system).energy_forces(x.astype(np.float32))
    assert e.dtype == np.float32 and f.dtype == np.float32
    np.testing.assert_allclose(e, e_ref, rtol=0, atol=1e-5 * np.abs(e_ref).max())
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-5 * np.abs(f_ref).max())


def _cluster(n: int = 7, seed: int = 0, force=None):
    """``n`` charged particles with amber-like GB radii, packed so closely that some atoms lie inside another's
    radius (the ``step(r + sr2 - or1)`` branch) and others overlap partly (``L = or1``)."""
    rng = np.random.default_rng(seed)
    s = mm.System()
    gb = force if force is not None else GBSAOBC2Force(SA="ACE")
    for _ in range(n):
        s.addParticle(12.0)
        radius, scale = float(rng.uniform(0.12, 0.2)), float(rng.uniform(0.7, 0.9))
        gb.addParticle([float(rng.uniform(-0.8, 0.8)), radius, scale])
    gb.finalize()
    s.addForce(gb)
    x = rng.uniform(0, 0.25, (12, n, 3))
    x[:, 1] = x[:, 0] + 0.01  # j = 1 deep inside atom 0: r + sr_1 < or_0
    return s, x


def test_cluster_reaches_every_branch_and_equals_openmm():
    system, x = _cluster()
    gb = system.getForce(0)
    p = np.array([gb.getParticleParameters(i) for i in range(system.getNumParticles())])
    r = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    iu = ~np.eye(len(p), dtype=bool)
    buried = (r + p[None, None, :, 2] < p[None, :, None, 1]) & iu
    partial = (np.abs(r - p[None, None, :, 2]) < p[None, :, None, 1]) & ~buried & iu
    far = (np.abs(r - p[None, None, :, 2]) > p[None, :, None, 1]) & iu
    assert buried.any() and partial.any() and far.any()
    e_ref, f_ref = _reference(system, x)
    for dtype, tol in ((np.float64, 1e-9), (np.float32, 3e-5)):
        e, f = SystemEnergy(system).energy_forces(x.astype(dtype))
        np.testing.assert_allclose(e, e_ref, rtol=0, atol=tol * np.abs(e_ref).max())
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=tol * np.abs(f_ref).max())


def test_obc2_forces_are_minus_gradient(ala2):
    system, x, _, _ = ala2
    se = SystemEnergy(system)
    _, f = se.energy_forces(x[:1])
    h = 1e-6
    for i in range(22):
        for k in range(3):
            xp, xm = x[0].copy(), x[0].copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd = -(se.energy(xp) - se.energy(xm)) / (2 * h)
            assert fd == pytest.approx(f[0, i, k], rel=1e-5, abs=1e-3), (i, k)


def _edited(system, edit):
    s = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    edit([f for f in s.getForces() if isinstance(f, mm.CustomGBForce)][0])
    return s


@pytest.mark.parametrize("force", [GBSAOBC2Force(solventDielectric=80.0, SA="ACE"), GBSAOBC2Force(SA=None),
                                   GBSAOBC2Force(SA="ACE", kappa=1.0), GBSAOBC1Force(SA="ACE")],
                         ids=["dielectric", "no-surface-term", "salt", "obc1"])
def test_refuses_other_generalised_born_models(force):
    system, _ = _cluster(force=force)
    with pytest.raises(OpenMMSystemError, match="not OpenMM's OBC2") as err:
        SystemEnergy(system)
    assert err.value.hint


def test_refuses_edited_obc2_force():
    system, _ = _cluster()
    SystemEnergy(system)  # the unedited force is accepted
    edits = [
        ("not OpenMM's OBC2", lambda f: f.setEnergyTermParameters(1, "0*B", mm.CustomGBForce.SingleParticle)),
        ("not OpenMM's OBC2", lambda f: f.setComputedValueParameters(
            1, "B", f.getComputedValueParameters(1)[1].replace("4.85", "4.86"), mm.CustomGBForce.SingleParticle)),
        ("cutoff", lambda f: f.setNonbondedMethod(mm.CustomGBForce.CutoffNonPeriodic)),
        ("global parameters", lambda f: f.addGlobalParameter("lam", 1.0)),
        ("per-particle", lambda f: f.addPerParticleParameter("extra")),
    ]
    for match, edit in edits:
        with pytest.raises(OpenMMSystemError, match=match):
            SystemEnergy(_edited(system, edit))


def test_refuses_gbn2():
    _, system = alanine_dipeptide_system("gbn2", constraints=None)
    with pytest.raises(OpenMMSystemError, match="CustomGBForce"):
        SystemEnergy(system)


def test_system_potential_units_and_dense_md(ala2):
    """The dense MD adapter returns SystemEnergy's numbers in eV and eV/Å for positions in Å, in the dtype of the
    positions, and steps R replicas of the flexible molecule (hydrogen masses repartitioned) stably at 2 fs."""
    import ase
    import torch
    from ase import units

    from compscope.integrations.openmm_numba import SystemPotential
    from compscope.md import simulate_dense, with_hydrogen_mass

    system, x, (e_ref, f_ref), _ = ala2
    pot = SystemPotential(system)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-5)):
        e, f = pot.energy_forces(torch.as_tensor(x * 10.0, dtype=dtype))
        assert e.dtype == dtype and f.dtype == dtype and f.shape == x.shape
        kj = units.kJ / units.mol
        np.testing.assert_allclose(e.double().numpy(), e_ref * kj, rtol=0, atol=tol * np.abs(e_ref).max() * kj)
        np.testing.assert_allclose(f.double().numpy(), f_ref * kj / 10.0, rtol=0,
                                   atol=tol * np.abs(f_ref).max() * kj / 10.0)
    with pytest.raises(OpenMMSystemError, match="no graph interface"):
        pot(None)

    pdb, _ = alanine_dipeptide_system("obc", constraints=None)
    atoms = ase.Atoms([a.element.symbol for a in pdb.topology.atoms()],
                      positions=np.asarray(pdb.getPositions(asNumpy=True)._value) * 10.0)
    atoms = with_hydrogen_mass(atoms, 3.024, repartition=True)
    with pytest.warns(UserWarning, match="time step"):  # the engine's rule of thumb for 3 amu hydrogens: 1.73 fs
        res = simulate_dense(pot, atoms, steps=300, dt=2.0, temperature=300.0, replicas=8, friction=0.01, seed=1)
    assert all(s["stable"] for s in res.summary) and not res.violations
    p = res.state.momenta.view(8, 22, 3)
    m = res.state.masses.view(8, 22, 1)
    t_kin = float((p * p / m).sum() / (3 * 22 * 8) / units.kB)  # equipartition over 8 replicas
    assert 200.0 < t_kin < 420.0


@pytest.mark.parametrize("solvent", ["obc", "vacuum"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threads_split_the_batch_and_give_the_serial_result_bitwise(solvent, dtype, monkeypatch):
    """From PARALLEL_MIN_BATCH replicas on, the batch is cut into one chunk per numba thread, each through the
    serial kernels: energies and forces equal the serial result bit for bit (chunk sizes that do not divide the
    batch, energy-only calls too); smaller batches stay serial. The suite runs numba on one thread, so the chunks
    run one after another here; the next test runs them on two threads."""
    from compscope.integrations import openmm_numba

    pdb, system = alanine_dipeptide_system(solvent, constraints=None)
    se = SystemEnergy(system)
    x0 = np.asarray(pdb.getPositions(asNumpy=True)._value)
    for b in (openmm_numba.PARALLEL_MIN_BATCH - 1, openmm_numba.PARALLEL_MIN_BATCH, 37):
        x = (x0[None] + 0.01 * np.random.default_rng(b).standard_normal((b, len(x0), 3))).astype(dtype)
        monkeypatch.setattr(openmm_numba.nb, "get_num_threads", lambda: 1)
        e1, f1 = se.energy_forces(x)
        e1_only = se.energy(x)
        monkeypatch.setattr(openmm_numba.nb, "get_num_threads", lambda: 3)
        e2, f2 = se.energy_forces(x)
        assert np.array_equal(e1, e2) and np.array_equal(f1, f2) and np.array_equal(e1_only, se.energy(x))
        assert np.isfinite(e2).all() and float(np.abs(f2).max()) > 1.0


def test_two_numba_threads_give_the_serial_result(tmp_path):
    """The same on two real threads (a child process: this suite pins numba to one)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "two.py"
    script.write_text(
        "import numpy as np, numba\n"
        "from compscope.integrations.openmm_numba import SystemEnergy\n"
        "from compscope.integrations.openmm_systems import alanine_dipeptide_system\n"
        "pdb, system = alanine_dipeptide_system('obc', constraints=None)\n"
        "x0 = np.asarray(pdb.getPositions(asNumpy=True)._value)\n"
        "x = x0[None] + 0.01 * np.random.default_rng(0).standard_normal((41, 22, 3))\n"
        "se = SystemEnergy(system)\n"
        "numba.set_num_threads(1); e1, f1 = se.energy_forces(x)\n"
        "numba.set_num_threads(2); e2, f2 = se.energy_forces(x)\n"
        "assert numba.get_num_threads() == 2\n"
        "print('same' if np.array_equal(e1, e2) and np.array_equal(f1, f2) else 'different')\n")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "COMPSCOPE_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("same")
