"""The dense MD engine (compscope.md.simulate_dense): Boltzmann sampling of a double well (float32 and float64), the
same trajectory as the graph engine for the same seed, bitwise resume, a clean stop of a replica that blows up, bad
input refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from ase import Atoms, units

from compscope.md import MDInputError, StabilityMonitor, simulate, simulate_dense
from compscope.models import CGPotential


class DoubleWell(torch.nn.Module):
    """One particle per molecule: ``h ((x/a)^2 - 1)^2 + k/2 (y^2 + z^2)`` (eV, Å); dense contract only."""

    cutoff = 1.0

    def __init__(self, h: float, a: float = 0.5, k: float = 2.0):
        super().__init__()
        self.h, self.a, self.k = h, a, k

    def energy_forces(self, x):  # (B, 1, 3)
        u = (x[..., 0] / self.a) ** 2 - 1.0
        e = (self.h * u**2 + 0.5 * self.k * (x[..., 1] ** 2 + x[..., 2] ** 2)).sum(-1)
        f = torch.stack([-4.0 * self.h * u * x[..., 0] / self.a**2, -self.k * x[..., 1], -self.k * x[..., 2]], -1)
        return e, f


def _exact(h: float, a: float, temperature: float, edges: np.ndarray) -> np.ndarray:
    fine = np.linspace(edges[0], edges[-1], 20001)
    w = np.exp(-h * ((fine / a) ** 2 - 1.0) ** 2 / (units.kB * temperature))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(fine))])
    p = np.diff(np.interp(edges, fine, cdf))
    return p / p.sum()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_double_well_boltzmann(dtype, tmp_path):
    """Histogram of x over 256 batched replicas equals the exact Boltzmann marginal, and the kinetic temperature is
    the thermostat's; the same histogram is far from the marginal at twice the temperature (the test can fail)."""
    kT = units.kB * 300.0
    pot = DoubleWell(h=2.0 * kT)
    R = 256
    start = [Atoms("H", positions=[[0.5 if r % 2 else -0.5, 0.0, 0.0]]) for r in range(R)]
    res = simulate_dense(pot, start, steps=3000, dt=1.0, temperature=300.0, friction=0.05, seed=1, out=tmp_path,
                         traj_every=10, dtype=dtype, block_frames=64,
                         monitor=StabilityMonitor(max_temperature=1e5))  # one atom: T of 3 dof fluctuates wildly
    assert res.n_stable == R and res.cpu_s is not None and res.cpu_s > 0
    with h5py.File(tmp_path / "trajectory.h5") as f:
        n = int(f.attrs["n_frames"])
        assert n == 301 and f["particles/all/position/value"].chunks[0] > 1  # frames were written in blocks
        x = f["particles/all/position/value"][50:n, :, 0].reshape(-1)  # after 500 fs of equilibration
        temp = f["observables/temperature/value"][50:n]
    edges = np.linspace(-1.1, 1.1, 23)
    hist = np.histogram(np.clip(x, -1.0999, 1.0999), bins=edges)[0] / x.size
    tv = 0.5 * np.abs(hist - _exact(pot.h, pot.a, 300.0, edges)).sum()
    tv_hot = 0.5 * np.abs(hist - _exact(pot.h, pot.a, 600.0, edges)).sum()
    assert tv < 0.03 < tv_hot, (tv, tv_hot)
    assert abs(temp.mean() / 300.0 - 1.0) < 0.03


def _chain_potential(net: bool = True) -> CGPotential:
    """A 5-bead CG chain: harmonic bonds/angles, dihedral terms, repulsion, a small CGnet-style MLP and a tiny
    equivariant network with a cutoff shorter than the chain (pairs beyond it add exactly zero)."""
    torch.manual_seed(0)
    prior = {"bonds": [[i, i + 1] for i in range(4)], "bond_r0": [1.45] * 4, "bond_k": [20.0] * 4,
             "angles": [[i, i + 1, i + 2] for i in range(3)], "angle_theta0": [1.95] * 3, "angle_k": [4.0] * 3,
             "repulsion_pairs": [[0, 3], [0, 4], [1, 4]], "repulsion_sigma": [2.5] * 3,
             "repulsion_epsilon": [0.026] * 3, "dihedrals": [[0, 1, 2, 3], [1, 2, 3, 4]],
             "dihedral_cos": [[0.02, 0.01], [0.01, -0.01]], "dihedral_sin": [[0.01, 0.0], [-0.02, 0.01]]}
    feat = {"hidden": [8], "angles": prior["angles"], "dihedrals": prior["dihedrals"]}
    tiny = {"r_max": 3.0, "hidden_irreps": "4x0e+4x1o", "num_interactions": 1, "correlation": 2,
            "radial_hidden": [8], "num_bessel": 4, "avg_num_neighbors": 4.0} if net else None
    return CGPotential([6, 7, 6, 6, 7], prior=prior, net=tiny, energy_scale=0.026, feature_net=feat).double()


def _chains(R: int) -> list[Atoms]:
    rng = np.random.default_rng(0)
    base = np.array([[0.0, 0.0, 0.0], [1.2, 0.8, 0.0], [2.6, 0.6, 0.3], [3.4, 1.8, 0.6], [4.8, 1.7, 0.2]])
    return [Atoms(numbers=[6, 7, 6, 6, 7], positions=base + 0.05 * rng.standard_normal(base.shape)) for _ in range(R)]


def test_dense_equals_graph_engine(tmp_path):
    """Same seed, same start: the dense engine follows the graph engine's trajectory (same momenta, same noise
    stream, same arithmetic; the energy sums differ only in their order, so not bitwise: within 1e-9 Å in float64
    over 100 steps)."""
    pot = _chain_potential()
    x = torch.as_tensor(np.stack([a.positions for a in _chains(3)]))
    e, f = pot.energy_forces(x)
    out = pot(pot.make_graph(x))  # radius graph: only the pairs within r_max = 3 Å
    assert torch.allclose(e, out["energy"], atol=1e-12) and torch.allclose(f.reshape(-1, 3), out["forces"], atol=1e-11)
    kw = dict(steps=100, dt=2.0, temperature=300.0, seed=3, traj_every=25)
    dense = simulate_dense(pot, _chains(3), out=tmp_path / "dense", monitor=StabilityMonitor(check_every=10), **kw)
    graph = simulate(pot, _chains(3), out=tmp_path / "graph", extxyz=False, monitor=StabilityMonitor(check_every=10),
                     **kw)
    moved = (dense.state.positions - x.reshape(-1, 3)).abs().max()
    assert moved > 0.05
    assert torch.allclose(dense.state.positions, graph.state.positions, atol=1e-9, rtol=0)
    assert torch.allclose(dense.state.momenta, graph.state.momenta, atol=1e-9, rtol=0)
    with h5py.File(tmp_path / "dense/trajectory.h5") as a, h5py.File(tmp_path / "graph/trajectory.h5") as b:
        for k in ("particles/all/position/step", "particles/all/species", "particles/all/replica"):
            assert np.array_equal(a[k][:], b[k][:])
        assert np.allclose(a["particles/all/position/value"][:], b["particles/all/position/value"][:], atol=1e-9)
        assert np.allclose(a["observables/temperature/value"][:], b["observables/temperature/value"][:], rtol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dense_resume_bitwise(dtype, tmp_path):
    """60 + 60 steps with a resume in between give bitwise the run of 120 steps (positions, momenta, frames)."""
    pot = _chain_potential(net=False)
    kw = dict(dt=2.0, temperature=300.0, seed=5, traj_every=10, block_frames=2, dtype=dtype)
    full = simulate_dense(pot, _chains(4), steps=120, out=tmp_path / "full", **kw)
    simulate_dense(pot, _chains(4), steps=60, out=tmp_path / "cut", **kw)
    resumed = simulate_dense(pot, _chains(4), steps=120, out=tmp_path / "cut", resume=True, **kw)
    assert resumed.steps == 120 and resumed.state.positions.dtype == dtype
    assert torch.equal(full.state.positions, resumed.state.positions)
    assert torch.equal(full.state.momenta, resumed.state.momenta)
    with h5py.File(tmp_path / "full/trajectory.h5") as a, h5py.File(tmp_path / "cut/trajectory.h5") as b:
        assert int(a.attrs["n_frames"]) == int(b.attrs["n_frames"]) == 13
        assert np.array_equal(a["particles/all/position/value"][:], b["particles/all/position/value"][:])
        assert np.array_equal(a["particles/all/position/step"][:], b["particles/all/position/step"][:])
    with pytest.raises(Exception, match="dt"):  # the resume guard refuses another time step
        simulate_dense(pot, _chains(4), steps=200, out=tmp_path / "cut", resume=True, **{**kw, "dt": 1.0})


class Bomb(torch.nn.Module):
    """Two C atoms, a harmonic bond; in replica 0 the bond pushes apart after step ~50 (it blows up)."""

    cutoff = 2.0

    def energy_forces(self, x):  # (B, 2, 3)
        d = x[:, 1] - x[:, 0]
        r = d.norm(dim=-1)
        k = torch.full_like(r, 10.0)
        k[0] = -10.0 if r[0] > 1.52 else 10.0  # unstable once stretched a little
        e = 0.5 * k * (r - 1.5) ** 2
        fj = -(k * (r - 1.5) / r)[:, None] * d
        return e, torch.stack([-fj, fj], 1)


def test_blow_up_stops_cleanly(tmp_path):
    """The replica that blows up is stopped at its last good frame, the others run to the end, everything written
    before is kept, the failed frame and the violation are recorded."""
    start = [Atoms("C2", positions=[[0, 0, 0], [1.5, 0, 0]]) for _ in range(3)]
    res = simulate_dense(Bomb(), start, steps=2000, dt=1.0, temperature=300.0, seed=0, out=tmp_path, traj_every=100,
                         monitor=StabilityMonitor(check_every=10, max_temperature=1e5), block_frames=4)
    assert res.steps == 2000 and res.n_stable == 2
    row = res.summary[0]
    assert not row["stable"] and row["stopped_at_step"] is not None and "bond_stretch" in row["reason"]
    assert (tmp_path / "failed_replica_0.extxyz").exists() and (tmp_path / "violations.json").exists()
    with h5py.File(tmp_path / "trajectory.h5") as f:
        assert int(f.attrs["n_frames"]) == 21
        pos = f["particles/all/position/value"][:]
        active = f["observables/active/value"][:]
    assert np.isfinite(pos).all()
    assert active[-1].tolist() == [0.0, 1.0, 1.0]
    bond0 = np.linalg.norm(pos[:, 1] - pos[:, 0], axis=-1)
    assert bond0.max() < 1.6 * 1.5  # never past the monitor's limit in a written frame


def test_dense_bad_input(tmp_path):
    pot = _chain_potential(net=False)
    with pytest.raises(MDInputError, match="energy_forces"):
        simulate_dense(torch.nn.Linear(1, 1), _chains(1), steps=1)
    with pytest.raises(MDInputError, match="dense step"):
        simulate_dense(pot, _chains(1), steps=1, integrator="nhc")
    with pytest.raises(MDInputError, match="same atoms"):
        simulate_dense(pot, [*_chains(1), Atoms("C4N", positions=_chains(1)[0].positions)], steps=1)
    periodic = _chains(1)[0]
    periodic.cell, periodic.pbc = [20.0, 20.0, 20.0], True
    with pytest.raises(MDInputError, match="periodic"):
        simulate_dense(pot, [periodic], steps=1)
    with pytest.raises(MDInputError, match="--out"):
        simulate_dense(pot, _chains(1), steps=1, resume=True)
