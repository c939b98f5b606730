"""Radial distribution functions and density: ideal gas g = 1, a crystal's shells, every image beyond half the
cell, water's O-O first peak."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read

from compscope.md import density_g_cm3, radial_distribution

from ..conftest import FIXTURES


def test_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    cell = np.array([[9.0, 0, 0], [2.0, 8.5, 0], [-1.0, 1.5, 9.5]])  # skewed
    frames = [Atoms("Ar400", positions=rng.uniform(0, 1, (400, 3)) @ cell, cell=cell, pbc=True) for _ in range(5)]
    r, g = radial_distribution(frames, r_max=7.0, n_bins=14)  # 7 Å > half the cell's plane spacing
    assert np.all(np.abs(g[2:] - 1.0) < 0.1), g


def test_fcc_shells():
    atoms = bulk("Cu", "fcc", a=3.6)  # one atom: every neighbour is an image
    r, g = radial_distribution(atoms, r_max=4.0, n_bins=400)
    peaks = r[g > 0]
    assert np.allclose(sorted({round(float(x), 1) for x in peaks}), [2.5, 3.6], atol=0.06)
    # 12 neighbours at a / sqrt(2): the integral of rho g(r) 4 pi r^2 dr over the first shell
    rho = 1 / atoms.get_volume()
    dr = r[1] - r[0]
    first = (r > 2.3) & (r < 2.8)
    assert abs(np.sum(rho * g[first] * 4 * np.pi * r[first] ** 2 * dr) - 12) < 0.2


def test_water_oo_and_density():
    atoms = read(FIXTURES / "water" / "water_test_4.extxyz", ":")
    assert abs(density_g_cm3(atoms[0]) - 0.99) < 0.02  # 64 H2O in (12.44 Å)^3
    r, g = radial_distribution(atoms, r_max=6.0, n_bins=60, pair=(8, 8))
    peak = r[np.argmax(g)]
    assert 2.6 < peak < 3.0 and g.max() > 2.0  # liquid water's first O-O shell at ~2.8 Å
    with pytest.raises(ValueError, match="no atoms"):
        radial_distribution(atoms[0], 3.0, pair=(8, 6))
    with pytest.raises(ValueError, match="periodic"):
        radial_distribution(Atoms("H2", positions=[[0, 0, 0], [0, 0, 1]]), 3.0)
