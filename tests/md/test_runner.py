"""simulate(): monitors stop bad replicas, trajectories/restarts, --resume, corrupt tails, plots, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import write

from compscope.data import keys as K
from compscope.errors import ResumeError
from compscope.md import MDInputError, StabilityMonitor, read_h5_observables, repair_extxyz, simulate
from compscope.md.potentials import LennardJones, Morse

from .conftest import thermalize


def _with_momenta(atoms, seed, T=60.0):
    return thermalize(atoms, T, seed)


def test_bad_replica_stops_others_go_on(lj, ar_cluster, tmp_path):
    """Replica 1 gets a 40 eV kick into its neighbour: it is stopped, 0 and 2 run on unchanged."""
    starts = [_with_momenta(ar_cluster, k) for k in range(3)]
    p = starts[1].get_momenta()
    d = starts[1].positions[1] - starts[1].positions[0]
    m = starts[1].get_masses()[0]
    p[0] = np.sqrt(2 * m * 40.0) * d / np.linalg.norm(d)
    starts[1].set_momenta(p)
    res = simulate(lj, starts, steps=200, dt=2.0, integrator="nve", out=tmp_path, traj_every=20, temperature=60.0,
                   initial_momenta="atoms", monitor=StabilityMonitor(check_every=5))
    assert [r["stable"] for r in res.summary] == [True, False, True]
    v = res.violations[0]
    assert v.replica == 1 and v.reason in ("min_distance", "temperature", "nonfinite", "drift")
    assert v.last_good_step < v.step <= v.last_good_step + 5
    saved = (tmp_path / "failed_replica_1.extxyz").read_text()
    assert f"step={v.last_good_step}" in saved and "reason=" in saved
    assert json.loads((tmp_path / "summary.json").read_text())["n_stable"] == 2
    # the good replicas are exactly what they are without the bad one in the batch
    ref = simulate(lj, [starts[0], starts[2]], steps=200, dt=2.0, integrator="nve", initial_momenta="atoms")
    for k, g in ((0, 0), (2, 1)):
        torch.testing.assert_close(res.state.positions[res.state.batch == k], ref.state.positions[ref.state.batch == g])
    # the stopped replica stays at its last good frame
    obs = read_h5_observables(tmp_path / "trajectory.h5")
    assert obs["active"][-1].tolist() == [1.0, 0.0, 1.0]


def test_bond_stretch_monitor_h2(tmp_path):
    """An H2 replica given 8 eV along its bond dissociates: stopped for bond stretch."""
    morse = Morse(D=4.75, a=1.94, r0=0.741, cutoff=3.0, r_on=2.5)
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.741]])
    hot = h2.copy()
    hot.set_momenta([[0, 0, -np.sqrt(2 * 1.008 * 4.0)], [0, 0, np.sqrt(2 * 1.008 * 4.0)]])
    res = simulate(morse, [h2, hot], steps=300, dt=0.25, integrator="nve", temperature=0.0,
                   initial_momenta="atoms", monitor=StabilityMonitor(check_every=1, max_temperature=1e9))
    assert res.summary[0]["stable"] and not res.summary[1]["stable"]
    assert res.violations[0].reason == "bond_stretch"


def test_bond_check_off_for_systems_whose_bonds_change_partner():
    """max_bond_stretch=None: the same dissociating H2 runs on (no bond check, as for liquid water, where a proton
    may hop to the next oxygen); the other checks stay on (the hot replica's temperature still stops it when its
    limit is low), and a factor <= 1 is still refused."""
    morse = Morse(D=4.75, a=1.94, r0=0.741, cutoff=3.0, r_on=2.5)
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.741]])
    hot = h2.copy()
    hot.set_momenta([[0, 0, -np.sqrt(2 * 1.008 * 4.0)], [0, 0, np.sqrt(2 * 1.008 * 4.0)]])
    kw = dict(steps=300, dt=0.25, integrator="nve", temperature=0.0, initial_momenta="atoms")
    res = simulate(morse, [h2, hot], monitor=StabilityMonitor(check_every=1, max_temperature=1e9,
                                                             max_bond_stretch=None), **kw)
    assert [r["stable"] for r in res.summary] == [True, True]
    d = res.state.positions[3] - res.state.positions[2]
    assert float(d.norm()) > 1.6 * 0.741  # it did dissociate
    res = simulate(morse, [h2, hot], monitor=StabilityMonitor(check_every=1, max_temperature=1000.0,
                                                             max_bond_stretch=None), **kw)
    assert not res.summary[1]["stable"] and res.violations[0].reason == "temperature"
    with pytest.raises(MDInputError, match="factor > 1"):
        StabilityMonitor(max_bond_stretch=0.9)


class _NaNAfter(LennardJones):
    """LJ that returns NaN forces for replica 0 once its first atom moved 0.05 Å (a learned model failing)."""

    def forward(self, graph, compute_forces=True, compute_stress=False):
        out = super().forward(graph, compute_forces, compute_stress)
        if not hasattr(self, "x0"):
            self.x0 = graph.positions[0].clone()
        if float((graph.positions[0] - self.x0).norm()) > 0.05:
            out[K.FORCES] = out[K.FORCES].clone()
            out[K.FORCES][graph.batch == 0] = float("nan")
        return out


def test_nonfinite_forces_stop_replica(ar_cluster):
    pot = _NaNAfter(epsilon=0.0104, sigma=3.4, cutoff=6.5, r_on=5.5)
    res = simulate(pot, ar_cluster, replicas=2, steps=100, dt=4.0, temperature=100.0, integrator="nve")
    assert [r["stable"] for r in res.summary] == [False, True]
    assert res.violations[0].reason == "nonfinite"
    assert torch.isfinite(res.state.positions).all()


def test_drift_monitor_catches_too_large_dt(lj, ar_crystal):
    with pytest.warns(UserWarning, match="too large"):
        res = simulate(lj, ar_crystal, steps=300, dt=60.0, temperature=150.0, integrator="nve",
                       monitor=StabilityMonitor(max_drift=2e-4))
    assert not res.summary[0]["stable"]
    assert res.violations[0].reason == "drift"


def test_trajectory_files_and_plots(lj, ar_cluster, tmp_path):
    res = simulate(lj, ar_cluster, replicas=2, steps=60, dt=4.0, temperature=50.0, integrator="nhc",
                   out=tmp_path, traj_every=20, plots=True)
    with h5py.File(tmp_path / "trajectory.h5") as f:
        assert f.attrs["n_frames"] == 4
        assert f["particles/all/position/value"].shape == (4, 26, 3)
        assert f["particles/all/position/step"][:].tolist() == [0, 20, 40, 60]
        assert f["observables/temperature/value"].shape == (4, 2)
        assert f["particles/all/species"][:].tolist() == [18] * 26
    from ase.io import read

    frames = read(tmp_path / "trajectory.extxyz", index=":")
    assert len(frames) == 8 and frames[-1].info["step"] == 60 and frames[-1].info["replica"] == 1
    np.testing.assert_allclose(frames[-1].get_positions(), res.state.positions[13:].numpy(), atol=1e-6)
    for png in ("energy_temperature.png", ):
        assert (tmp_path / png).stat().st_size > 5000


def test_resume_after_corrupt_tail_equals_uninterrupted_run(lj, ar_crystal, tmp_path):
    """Run 60 steps; separately run 40, cut the extxyz mid-frame, resume to 60: identical result."""
    start = _with_momenta(ar_crystal, 5)
    kw = dict(dt=4.0, integrator="nhc", temperature=80.0, traj_every=20, initial_momenta="atoms", replicas=2)
    full = simulate(lj, [start, start], steps=60, out=tmp_path / "a", **kw)
    part = tmp_path / "b"
    simulate(lj, [start, start], steps=40, out=part, **kw)
    xyz = part / "trajectory.extxyz"
    good = xyz.read_bytes()
    xyz.write_bytes(good + good[: len(good) // 7])  # a half-written extra frame at the end
    res = simulate(lj, [start, start], steps=60, out=part, resume=True, **kw)
    assert res.steps == 60
    d = (res.state.positions - full.state.positions).numpy() @ np.linalg.inv(start.cell.array)
    assert np.abs(d - np.round(d)).max() < 1e-9
    torch.testing.assert_close(res.state.momenta, full.state.momenta, atol=1e-9, rtol=0)
    from ase.io import read

    frames = read(xyz, index=":")
    assert [f.info["step"] for f in frames[::2]] == [0, 20, 40, 60]
    with h5py.File(part / "trajectory.h5") as f:
        assert f["particles/all/position/step"][:].tolist() == [0, 20, 40, 60]


def test_resume_without_restart_uses_last_complete_frame(lj, ar_cluster, tmp_path):
    kw = dict(dt=4.0, integrator="nve", temperature=50.0, traj_every=10)
    simulate(lj, ar_cluster, steps=30, out=tmp_path, **kw)
    (tmp_path / "restart.pt").unlink()
    xyz = tmp_path / "trajectory.extxyz"
    xyz.write_bytes(xyz.read_bytes()[:-200])  # the step-30 frame is cut
    res = simulate(lj, ar_cluster, steps=50, out=tmp_path, resume=True, **kw)
    assert res.steps == 50
    from ase.io import read

    steps = [f.info["step"] for f in read(xyz, index=":")]
    assert steps == [0, 10, 20, 30, 40, 50]  # resumed from step 20


def test_resume_refuses_changed_settings(lj, ar_cluster, tmp_path):
    simulate(lj, ar_cluster, steps=10, dt=4.0, out=tmp_path, traj_every=5)
    with pytest.raises(ResumeError, match=r"--resume with changed settings of .*integrator: .*'dt': 4\.0.* -> ") as err:
        simulate(lj, ar_cluster, steps=20, dt=2.0, out=tmp_path, resume=True, traj_every=5)
    assert "mix two different simulations" in err.value.hint
    with pytest.raises(ResumeError, match="replicas: 1 -> 2"):
        simulate(lj, ar_cluster, steps=20, dt=4.0, out=tmp_path, resume=True, traj_every=5, replicas=2)
    with pytest.raises(MDInputError, match="--out"):
        simulate(lj, ar_cluster, steps=20, resume=True)


def test_repair_extxyz_counts(tmp_path, ar_cluster):
    p = tmp_path / "t.extxyz"
    for s in range(3):
        a = ar_cluster.copy()
        a.info["step"] = s
        write(p, a, format="extxyz", append=True)
    data = p.read_bytes()
    p.write_bytes(data + b"13\nstep=3\nAr 0.0 0.0\n")
    assert repair_extxyz(p) == (3, len(b"13\nstep=3\nAr 0.0 0.0\n"))
    assert repair_extxyz(p, max_step=1) [0] == 2


def test_bad_start_structures(lj, ar_cluster):
    bad = ar_cluster.copy()
    bad.positions[3] = bad.positions[2] + [0.1, 0, 0]
    with pytest.raises(MDInputError, match="overlapping atoms"):
        simulate(lj, bad, steps=1)
    neon = ar_cluster.copy()
    neon.numbers[0] = 10
    with pytest.raises(MDInputError, match=r"element\(s\) \['Ne'\].*does not\s+know"):
        simulate(lj, neon, steps=1)
    with pytest.warns(UserWarning, match="time step 12.0 fs is too large"):
        simulate(lj, ar_cluster, steps=1, dt=12.0)


def test_resume_with_unreadable_hdf5(lj, ar_cluster, tmp_path):
    """A truncated HDF5 file is moved aside; the run resumes from its restart file into a new one."""
    kw = dict(dt=4.0, integrator="nve", temperature=50.0, traj_every=10)
    simulate(lj, ar_cluster, steps=30, out=tmp_path, **kw)
    h5 = tmp_path / "trajectory.h5"
    h5.write_bytes(h5.read_bytes()[:1500])
    res = simulate(lj, ar_cluster, steps=50, out=tmp_path, resume=True, **kw)
    assert res.steps == 50 and (tmp_path / "trajectory.h5.corrupt").exists()
    assert read_h5_observables(h5)["step"].tolist() == [40, 50]
