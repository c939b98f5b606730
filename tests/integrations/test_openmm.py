"""OpenMM bridge: unit conversion against the ASE-calculator path (float64, 1e-5 relative) and real dynamics."""

from __future__ import annotations

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

from compscope.integrations.ase import Calculator  # noqa: E402
from compscope.integrations.openmm import EV_TO_KJMOL, OpenMMBridge, state_to_ev  # noqa: E402


@pytest.mark.parametrize("system", ["ar_cluster", "ar_crystal"])
def test_openmm_energy_forces_match_ase_calculator(lj, system, request):
    atoms = request.getfixturevalue(system).copy()
    bridge = OpenMMBridge(lj, atoms)
    ctx = bridge.context(openmm.VerletIntegrator(0.001))
    rng = np.random.default_rng(0)
    for _ in range(3):
        pos = atoms.get_positions() + rng.normal(0, 0.1, (len(atoms), 3))
        ctx.setPositions((pos / 10.0).tolist())
        bridge.update(ctx)
        e_omm, f_omm = OpenMMBridge.openmm_energy_forces(ctx)
        ref = atoms.copy()
        ref.positions = pos
        ref.calc = Calculator(lj)
        e_ase, f_ase = ref.get_potential_energy(), ref.get_forces()
        assert abs(e_omm - e_ase) <= 1e-5 * abs(e_ase)
        np.testing.assert_allclose(f_omm, f_ase, rtol=1e-5, atol=1e-5 * np.abs(f_ase).max())


def test_openmm_dynamics_conserves_energy(lj, ar_cluster):
    """200 OpenMM Verlet steps of 4 fs driven by the compscope potential: total energy is conserved."""
    import openmm.unit as u

    bridge = OpenMMBridge(lj, ar_cluster)
    ctx = bridge.context(openmm.VerletIntegrator(0.004))
    ctx.setVelocitiesToTemperature(40.0, 1)
    totals = []
    for _ in range(20):
        bridge.step(ctx, 10)
        st = ctx.getState(getEnergy=True)
        totals.append((st.getPotentialEnergy() + st.getKineticEnergy()).value_in_unit(u.kilojoule_per_mole))
    totals = np.asarray(totals) / EV_TO_KJMOL
    e_pot = OpenMMBridge.openmm_energy_forces(ctx)[0]
    assert np.isfinite(e_pot)
    assert np.ptp(totals) / len(ar_cluster) < 2e-4  # leapfrog KE is a half step off: small, bounded wobble


def test_state_to_ev_converts_every_quantity(lj, ar_cluster):
    """Positions, forces, energy and time of an OpenMM state come back in Å, eV/Å, eV and fs."""
    bridge = OpenMMBridge(lj, ar_cluster)
    ctx = bridge.context(openmm.VerletIntegrator(0.002))  # 2 fs, in ps
    ctx.setVelocitiesToTemperature(40.0, 1)
    bridge.step(ctx, 3)
    st = state_to_ev(ctx.getState(getPositions=True, getForces=True, getEnergy=True))
    assert st["time"] == pytest.approx(6.0)
    assert np.abs(st["positions"] - ar_cluster.positions).max() < 0.5  # Å, not nm
    e, f = bridge.model_energy_forces(st["positions"])
    assert st["energy"] == pytest.approx(e, rel=1e-9)
    np.testing.assert_allclose(st["forces"], f, rtol=1e-7, atol=1e-9)
    assert set(state_to_ev(ctx.getState(getPositions=True))) == {"time", "positions"}
