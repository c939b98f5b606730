"""Prior fit by Boltzmann inversion: sampling the fitted prior gives back the distributions it was fitted on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units

from compscope.cg import CGDataError, fit_prior, load_cg
from compscope.models import CGPrior, bond_angles, bond_lengths, dihedral_angles


def _metropolis(prior: CGPrior, x0: np.ndarray, kT: float, sweeps: int, step: float, seed: int = 0) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(x0).clone()
    e = prior(x)
    for _ in range(sweeps):
        prop = x + step * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        ep = prior(prop)
        acc = torch.rand(len(x), generator=gen, dtype=x.dtype) < torch.exp(-(ep - e) / kT)
        x = torch.where(acc[:, None, None], prop, x)
        e = torch.where(acc, ep, e)
    return x.numpy()


def test_prior_reproduces_bond_and_angle_distributions(cg_file):
    x = np.concatenate(load_cg(cg_file).positions)
    kT = units.kB * 300.0
    prior = CGPrior(5, **fit_prior(x, 300.0))
    assert len(prior.bonds) == 4 and len(prior.angles) == 3 and len(prior.repulsion_pairs) == 3
    start = np.repeat(x, 3, axis=0)
    samples = _metropolis(prior, start, kT, sweeps=400, step=0.01)
    for fn, idx in ((bond_lengths, prior.bonds), (bond_angles, prior.angles)):
        ref = fn(torch.as_tensor(x), idx).numpy()
        got = fn(torch.as_tensor(samples), idx).numpy()
        np.testing.assert_array_less(np.abs(got.mean(0) - ref.mean(0)), 0.2 * ref.std(0))
        np.testing.assert_allclose(got.std(0), ref.std(0), rtol=0.15)


def test_dihedral_fourier_fit_recovers_a_known_potential():
    """Frames whose dihedral is drawn from exp(-U/kT), U = a cos(phi) + b sin(2 phi): the fit returns a and b."""
    kT, a, b = 0.0259, 0.03, -0.02
    rng = np.random.default_rng(0)
    grid = np.linspace(-np.pi, np.pi, 20001)
    p = np.exp(-(a * np.cos(grid) + b * np.sin(2 * grid)) / kT)
    phi = rng.choice(grid, size=200_000, p=p / p.sum())
    # four beads: (1,0,0) - origin - (0,0,1) - rotated (1,0,1); dihedral = phi with the IUPAC sign
    n = len(phi)
    x = np.zeros((n, 4, 3))
    x[:, 0] = [1.0, 0, 0]
    x[:, 2] = [0, 0, 1.0]
    x[:, 3] = np.stack([np.cos(phi), np.sin(phi), np.ones(n)], -1)
    np.testing.assert_allclose(dihedral_angles(torch.as_tensor(x[:5]), torch.tensor([[0, 1, 2, 3]]))[:, 0].numpy(),
                               phi[:5], atol=1e-12)
    fit = fit_prior(x, 300.0, topology={"bonds": [], "angles": [], "dihedrals": [[0, 1, 2, 3]]}, dihedrals=True)
    cos, sin = fit["dihedral_cos"][0], fit["dihedral_sin"][0]
    np.testing.assert_allclose([cos[0], sin[1]], [a, b], atol=2e-3)
    np.testing.assert_allclose([cos[1], cos[2], sin[0], sin[2]], 0.0, atol=2e-3)


def test_prior_fit_bad_input():
    with pytest.raises(CGDataError, match="T >= 2"):
        fit_prior(np.zeros((1, 5, 3)))


def test_dihedral_prior_order_and_pseudocount_raise_the_unvisited_region():
    """Frames that only visit phi < 0: a higher order and a smaller pseudo-count give the never-visited half a
    higher prior free energy than the default fit (a CG model then stays where the reference went)."""
    rng = np.random.default_rng(3)
    phi = np.clip(rng.normal(-1.5, 0.4, 50_000), -np.pi, -0.05)
    n = len(phi)
    x = np.zeros((n, 4, 3))
    x[:, 0] = [1.0, 0, 0]
    x[:, 2] = [0, 0, 1.0]
    x[:, 3] = np.stack([np.cos(phi), np.sin(phi), np.ones(n)], -1)
    topo = {"bonds": [], "angles": [], "dihedrals": [[0, 1, 2, 3]]}
    grid = np.linspace(-np.pi, np.pi, 361)

    def energy(fit):
        m = np.arange(1, len(fit["dihedral_cos"][0]) + 1)
        e = (np.cos(np.outer(grid, m)) @ fit["dihedral_cos"][0] + np.sin(np.outer(grid, m)) @ fit["dihedral_sin"][0])
        return e - e.min()

    e_default = energy(fit_prior(x, 300.0, topology=topo, dihedrals=True))
    e_sharp = energy(fit_prior(x, 300.0, topology=topo, dihedrals=True, fourier_order=6, pseudocount=0.01))
    unvisited = (grid > 0.5) & (grid < 2.5)
    assert e_sharp[unvisited].mean() > e_default[unvisited].mean() + 0.02  # eV: ~1 kT more
    with pytest.raises(CGDataError, match="pseudocount"):
        fit_prior(x, 300.0, topology=topo, dihedrals=True, pseudocount=0.0)
