"""Integrators: conservation laws, convergence order, agreement with ASE, batch == separate runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.md.verlet import VelocityVerlet as AseVerlet

from compscope.integrations.ase import Calculator
from compscope.md import (
    LangevinBAOAB,
    NoseHooverChain,
    VelocityVerlet,
    init_state,
    kinetic_energy,
    maxwell_boltzmann,
    temperature,
)

from .conftest import thermalize


def _run(pot, atoms_list, integ, steps, temperature_K=100.0, seed=0, momenta="maxwell-boltzmann", every=1):
    state, ev = init_state(pot, atoms_list, temperature_K, seed=seed, initial_momenta=momenta)
    state = integ.init(state)
    cons = [integ.conserved(state)]
    for _ in range(steps):
        state = integ.apply(state, ev)
        if state.step % every == 0:
            c = integ.conserved(state)
            cons.append(c if c is not None else kinetic_energy(state.momenta, state.masses, state.batch,
                                                               state.num_graphs))
    return state, torch.stack(cons), ev


def test_maxwell_boltzmann_zero_momentum_and_temperature():
    m = torch.tensor([1.0, 12.0, 16.0, 1.0, 40.0] * 4)
    batch = torch.arange(4).repeat_interleave(5)
    p = maxwell_boltzmann(m, batch, 4, 300.0, generator=torch.Generator().manual_seed(0))
    p_tot = torch.zeros(4, 3).index_add(0, batch, p)
    assert torch.allclose(p_tot, torch.zeros(4, 3), atol=1e-12)
    assert torch.allclose(temperature(p, m, batch, 4), torch.full((4,), 300.0))


def test_nve_energy_drift_bound_and_second_order(lj, ar_crystal):
    """NVE drift is tiny, and the energy error of velocity Verlet shrinks ~dt^2."""
    errs = []
    for dt in (4.0, 2.0):
        steps = int(round(400 * 4.0 / dt))  # same 1.6 ps
        _, cons, _ = _run(lj, [ar_crystal], VelocityVerlet(dt), steps, temperature_K=60.0)
        dev = (cons[:, 0] - cons[0, 0]).abs()
        errs.append(float(dev.max()) / len(ar_crystal))
    assert errs[1] < 2e-5, f"NVE drift {errs[1]:.2e} eV/atom over 1.6 ps is too large"
    ratio = errs[0] / errs[1]
    assert 2.5 < ratio < 6.0, f"energy error should scale as dt^2 (ratio 4), got {ratio:.2f}"


def test_matches_ase_velocity_verlet(lj, ar_crystal):
    """Same potential, same start: our NVE trajectory equals ASE's VelocityVerlet step by step."""
    atoms = thermalize(ar_crystal, 80.0, 3)
    ref = atoms.copy()
    ref.calc = Calculator(lj)
    dyn = AseVerlet(ref, timestep=2.0 * units.fs)
    state, ev = init_state(lj, [atoms], initial_momenta="atoms")
    integ = VelocityVerlet(2.0)
    for _ in range(5):
        dyn.run(20)
        for _ in range(20):
            state = integ.apply(state, ev)
        # positions are unwrapped by ASE; compare modulo the cell
        d = state.positions.numpy() - ref.get_positions()
        frac = d @ np.linalg.inv(atoms.cell.array)
        assert np.abs(frac - np.round(frac)).max() * 10.52 < 1e-9
        np.testing.assert_allclose(state.momenta.numpy(), ref.get_momenta(), atol=1e-10)
    assert ev.rebuilds >= 1


@pytest.mark.parametrize("kind", ["nve", "nhc"])
def test_batch_equals_separate_runs(lj, ar_cluster, ar_crystal, kind):
    """Three replicas (two systems, different velocities) in one batch == three separate runs."""
    systems = [ar_cluster, ar_crystal, ar_cluster]
    starts = []
    for k, a in enumerate(systems):
        starts.append(thermalize(a, 50.0 + 20 * k, k))

    def integ():
        return VelocityVerlet(3.0) if kind == "nve" else NoseHooverChain(3.0, temperature=60.0, tau=100.0)

    batched, _, _ = _run(lj, starts, integ(), 60, momenta="atoms")
    for k, b in enumerate(starts):
        single, _, _ = _run(lj, [b], integ(), 60, momenta="atoms")
        sl = batched.batch == k
        d = (batched.positions[sl] - single.positions).numpy()
        if b.pbc.any():  # the two runs may wrap into the cell at different steps
            frac = d @ np.linalg.inv(b.cell.array)
            d = (frac - np.round(frac)) @ b.cell.array
        assert np.abs(d).max() < 1e-10
        torch.testing.assert_close(batched.momenta[sl], single.momenta, atol=1e-10, rtol=0)


def test_nose_hoover_conserved_quantity_and_temperature(lj, ar_crystal):
    """NHC: the extended energy is conserved and the mean temperature goes to the target from 20 K."""
    integ = NoseHooverChain(4.0, temperature=80.0, tau=100.0)
    state, ev = init_state(lj, [ar_crystal] * 4, 20.0, seed=0)
    state = integ.init(state)
    cons, temps = [integ.conserved(state)], []
    for i in range(1500):
        state = integ.apply(state, ev)
        if i % 10 == 0:
            cons.append(integ.conserved(state))
            if i >= 500:
                temps.append(temperature(state.momenta, state.masses, state.batch, 4))
    cons = torch.stack(cons)
    drift = float((cons - cons[0]).abs().max()) / len(ar_crystal)
    assert drift < 1e-4, f"NHC conserved quantity drifted by {drift:.2e} eV/atom"
    t_mean = float(torch.stack(temps).mean())
    assert abs(t_mean / 80.0 - 1) < 0.1, f"mean temperature {t_mean:.1f} K, target 80 K"


def test_langevin_kinetic_energy_distribution(lj, ar_cluster):
    """BAOAB at T: KE per replica follows Gamma(3n/2, kT): mean 3n kT/2, variance 3n (kT)^2/2."""
    T = 60.0
    G = 48
    integ = LangevinBAOAB(5.0, temperature=T, friction=0.02, seed=7)
    state, ev = init_state(lj, [ar_cluster] * G, T, seed=1)
    ke = []
    for i in range(700):
        state = integ.apply(state, ev)
        if i >= 100 and i % 4 == 0:
            ke.append(kinetic_energy(state.momenta, state.masses, state.batch, G))
    ke = torch.cat(ke).numpy()
    n = len(ar_cluster)
    kT = units.kB * T
    mean_exp, var_exp = 1.5 * n * kT, 1.5 * n * kT**2
    assert abs(ke.mean() / mean_exp - 1) < 0.03, (ke.mean(), mean_exp)
    assert abs(ke.var() / var_exp - 1) < 0.12, (ke.var(), var_exp)


def test_periodic_positions_are_wrapped(lj, ar_crystal):
    state, ev = init_state(lj, [ar_crystal], 200.0, seed=0)
    integ = VelocityVerlet(4.0)
    for _ in range(300):
        state = integ.apply(state, ev)
    frac = state.positions.numpy() @ np.linalg.inv(ar_crystal.cell.array)
    # wrapped at every neighbour-list rebuild: at most skin/2 outside the cell
    assert frac.min() > -0.05 and frac.max() < 1.05
    assert ev.rebuilds > 1


def test_bad_integrator_arguments():
    with pytest.raises(ValueError, match="dt must be > 0"):
        VelocityVerlet(0.0)
    with pytest.raises(ValueError, match="temperature > 0"):
        NoseHooverChain(1.0, temperature=0.0)
    with pytest.raises(ValueError, match="friction"):
        LangevinBAOAB(1.0, temperature=300.0, friction=-1.0)
