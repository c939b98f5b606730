"""Shared fixtures for the MD tests: small argon systems under an analytic Lennard-Jones potential."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.cluster import Icosahedron

from compscope.md.potentials import LennardJones

torch.set_num_threads(1)  # tiny systems: threads only add overhead on a shared 2-core machine


@pytest.fixture(autouse=True)
def _float64_default():
    """MD tests run in float64; restore the default afterwards so other test areas are unaffected."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def lj() -> LennardJones:
    """Argon Lennard-Jones (eps 10.4 meV, sigma 3.4 Å), smoothly cut at 6.5 Å."""
    return LennardJones(epsilon=0.0104, sigma=3.4, cutoff=6.5, r_on=5.5, atomic_numbers=[18])


@pytest.fixture
def ar_crystal():
    """32 argon atoms, fcc, periodic cube of 10.52 Å, slightly rattled."""
    a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    a.rattle(0.05, seed=1)
    return a


@pytest.fixture
def ar_cluster():
    """Argon icosahedron (13 atoms), no cell."""
    a = Icosahedron("Ar", noshells=2, latticeconstant=5.26)
    a.center(vacuum=0.0)
    a.rattle(0.02, seed=2)
    return a


def thermalize(atoms, temperature_K: float, seed: int):
    """A copy of ``atoms`` with Maxwell-Boltzmann momenta (seeded) and zero total momentum."""
    from ase.md import velocitydistribution as vd

    a = atoms.copy()
    rng = np.random.default_rng(seed)
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29 (MaxwellBoltzmannDistribution is deprecated there)
        vd.thermalize_momenta(a, temperature_K, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(a, temperature_K=temperature_K, rng=rng)
    vd.Stationary(a)
    return a
