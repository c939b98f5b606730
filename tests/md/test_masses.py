"""Heavier hydrogens: isotope substitution and HMR (masses, total mass, minimum image, bad input), the vibrational
period of a Morse H2 scaling as sqrt(mass), and simulate's resume guard refusing a changed mass."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from compscope.errors import ResumeError
from compscope.md import MDInputError, VelocityVerlet, init_state, simulate, with_hydrogen_mass
from compscope.md.potentials import Morse


def _water(shift=(0.0, 0.0, 0.0), cell=None):
    pos = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]) + np.asarray(shift)
    a = Atoms("OH2", positions=pos)
    if cell is not None:
        a.set_cell(cell)
        a.pbc = True
        a.wrap()
    return a


def test_isotope_substitution_copies_and_sets_hydrogens():
    w = _water()
    d = with_hydrogen_mass(w, 2.014)
    np.testing.assert_allclose(d.get_masses(), [w.get_masses()[0], 2.014, 2.014])
    np.testing.assert_allclose(w.get_masses()[1:], 1.008)  # the input is unchanged


def test_repartition_keeps_total_mass_across_the_periodic_boundary():
    w = _water(shift=(-0.5, 3.0, 3.0), cell=[6.0, 6.0, 6.0])  # O wraps to x = 5.5, its hydrogens stay near 0.5
    assert w.positions[0, 0] > 5.0 and w.positions[1, 0] < 1.0
    h = with_hydrogen_mass(w, 3.024, repartition=True)
    m0, m = w.get_masses(), h.get_masses()
    np.testing.assert_allclose(m.sum(), m0.sum())
    np.testing.assert_allclose(m[1:], 3.024)
    np.testing.assert_allclose(m[0], m0[0] - 2 * (3.024 - 1.008))


def test_bad_input():
    with pytest.raises(MDInputError, match="positive"):
        with_hydrogen_mass(_water(), -1.0)
    lonely = Atoms("OH", positions=[[0, 0, 0], [3.0, 0, 0]])
    with pytest.raises(MDInputError, match="no heavy atom within"):
        with_hydrogen_mass(lonely, 3.0, repartition=True)
    with pytest.raises(MDInputError, match="lighter than"):
        with_hydrogen_mass(_water(), 6.5, repartition=True)  # O: 16 - 2 x 5.49 = 5.0 amu < 6.5


def _period_fs(hydrogen_mass):
    """NVE period of a Morse H2 started 0.02 Å stretched, from the upward zero crossings of its bond length."""
    morse = Morse(D=4.75, a=1.94, r0=0.741, cutoff=3.0, r_on=2.5)
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.741 + 0.02]])
    atoms = h2 if hydrogen_mass is None else with_hydrogen_mass(h2, hydrogen_mass)
    state, evaluate = init_state(morse, [atoms], 0.0, 0, None, 0.5, "atoms")
    integ = VelocityVerlet(dt=0.05)
    state = integ.init(state)
    r = []
    for _ in range(1200):  # 60 fs: ~8 H2 periods
        state = integ.apply(state, evaluate)
        p = state.positions.detach().numpy()
        r.append(np.linalg.norm(p[1] - p[0]))
    r = np.asarray(r) - np.mean(r)
    up = np.flatnonzero((r[:-1] < 0) & (r[1:] >= 0))
    assert len(up) >= 4
    t = (up + r[up] / (r[up] - r[up + 1])) * 0.05  # crossing times, linearly interpolated (fs)
    return float(np.mean(np.diff(t)))


def test_vibrational_period_scales_with_sqrt_mass():
    ratio = _period_fs(2.014) / _period_fs(None)
    assert ratio == pytest.approx(np.sqrt(2.014 / 1.008), rel=0.02)


def test_resume_refuses_a_changed_hydrogen_mass(tmp_path):
    morse = Morse(D=4.75, a=1.94, r0=0.741, cutoff=3.0, r_on=2.5)
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.76]])
    simulate(morse, h2, steps=10, dt=0.25, integrator="nve", temperature=0.0, out=tmp_path, traj_every=5,
             extxyz=False, hydrogen_mass=2.014)
    with pytest.raises(ResumeError, match="masses"):
        simulate(morse, h2, steps=20, dt=0.25, integrator="nve", temperature=0.0, out=tmp_path, traj_every=5,
                 extxyz=False, resume=True)
    res = simulate(morse, h2, steps=20, dt=0.25, integrator="nve", temperature=0.0, out=tmp_path, traj_every=5,
                   extxyz=False, resume=True, hydrogen_mass=2.014)
    assert res.steps == 20
    np.testing.assert_allclose(res.state.masses.numpy(), [2.014, 2.014])
