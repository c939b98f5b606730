"""NPT with stochastic cell rescaling (Bernetti & Bussi 2020): an ideal gas samples p(V) ~ V^N exp(-P V / kT),
and a learned potential's stress drives the volume."""

import numpy as np
import pytest
import torch
from ase import Atoms, units

from compscope.md import MDInputError, StochasticCellRescaling, simulate
from compscope.md._runner import init_state


class IdealGas(torch.nn.Module):
    """No interactions: zero energy, forces and stress (the pressure is all kinetic)."""

    cutoff = 0.5

    def forward(self, graph, compute_forces=True, compute_stress=False):
        pos = graph.positions
        out = {"energy": pos.new_zeros(graph.num_graphs), "forces": torch.zeros_like(pos)}
        if compute_stress:
            out["stress"] = pos.new_zeros(graph.num_graphs, 3, 3)
        return out


def test_ideal_gas_volume_distribution():
    n, reps, temp = 8, 16, 300.0
    kT = units.kB * temp
    mean_v = 500.0  # Å^3: the target <V> = (N + 1) kT / P0 sets P0
    p0 = (n + 1) * kT / mean_v
    p0_bar = p0 / units.bar
    rng = np.random.default_rng(0)
    box = mean_v ** (1 / 3)
    atoms = [Atoms(f"Ar{n}", positions=rng.uniform(0, box, (n, 3)), cell=[box] * 3, pbc=True) for _ in range(reps)]
    state, evaluate = init_state(IdealGas(), atoms, temperature_K=temp, seed=1)
    integ = StochasticCellRescaling(dt=10.0, temperature=temp, pressure=p0_bar, tau_p=50.0,
                                    compressibility=1.0 / p0_bar, every=1, friction=0.02, seed=2)
    state = integ.init(state)
    vols = []
    for step in range(1300):
        state = integ.apply(state, evaluate)
        if step >= 100:
            vols.append(torch.linalg.det(state.graph.cell).abs().numpy().copy())
    v = np.concatenate(vols)
    # isothermal-isobaric ideal gas: V ~ Gamma(N + 1, kT / P0): mean (N+1) kT/P0, std sqrt(N+1) kT/P0
    assert abs(v.mean() / mean_v - 1) < 0.03, v.mean()
    assert abs(v.std() / (np.sqrt(n + 1) * kT / p0) - 1) < 0.1, v.std()
    # the whole distribution: deciles against the exact Gamma(N + 1, kT/P0) ones (V^(N+1), the equation with a
    # kT/V term in the log-volume drift, moves every decile by 8-13 %; V^(N-1) by as much the other way)
    from scipy.stats import gamma

    q = np.linspace(0.1, 0.9, 9)
    exact = gamma.ppf(q, n + 1, scale=kT / p0)
    assert np.abs(np.quantile(v, q) / exact - 1).max() < 0.05, np.quantile(v, q) / exact
    assert np.abs(gamma.ppf(q, n + 2, scale=kT / p0) / exact - 1).min() > 0.08
    # positions scale with the cell: every atom stays in (a periodic image of) its box
    frac = np.linalg.solve(state.graph.cell[0].numpy().T, state.positions[:n].numpy().T)
    assert np.isfinite(frac).all()


def test_tolerance_separates_the_neighbouring_ensembles():
    """p(V) ~ V^(N+1) or V^(N-1) (a wrong Ito term in the barostat) shift <V> by kT/P0: 11 % at N = 8, beyond the
    3 % tolerance above, so the test can tell them apart (a run with the V-form kT/V term gave +9.6 %)."""
    n = 8
    assert min(abs((n + 2) / (n + 1) - 1), abs(n / (n + 1) - 1)) > 0.1


def test_npt_refuses_non_periodic():
    mol = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 4.0]])
    with pytest.raises(MDInputError, match="periodic"):
        simulate(IdealGas(), mol, steps=2, integrator="npt", check_inputs=False)


def test_npt_run_records_volume_and_resumes(tmp_path, lj, ar_crystal):
    from compscope.md import read_h5_observables

    integ = StochasticCellRescaling(dt=4.0, temperature=80.0, pressure=1000.0, tau_p=200.0, compressibility=1e-4,
                                    every=2, seed=0)
    res = simulate(lj, ar_crystal, steps=20, integrator=integ, out=tmp_path, traj_every=10, plots=False)
    obs = read_h5_observables(tmp_path / "trajectory.h5")
    v = obs["volume"][:, 0]
    assert len(v) == 3 and v[-1] != v[0]
    assert abs(float(torch.linalg.det(res.state.graph.cell[0])) - v[-1]) < 1e-6 * v[-1]
    integ2 = StochasticCellRescaling(dt=4.0, temperature=80.0, pressure=1000.0, tau_p=200.0, compressibility=1e-4,
                                     every=2, seed=0)
    res2 = simulate(lj, ar_crystal, steps=30, integrator=integ2, out=tmp_path, traj_every=10, plots=False,
                    resume=True)
    # the resumed run starts from the restart's cell, not the start structure's
    v2 = read_h5_observables(tmp_path / "trajectory.h5")["volume"][:, 0]
    assert len(v2) == 4 and abs(v2[2] - v[-1]) < 1e-9 * v[-1]
    assert res2.steps == 30
