"""Targets: energies of the literature's data, forces = -grad u, E(n) and permutation invariance, dtypes, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compscope.sampling import (
    DoubleWell4,
    ForceFieldTarget,
    GaussianMixture,
    LennardJones,
    SamplingInputError,
    get_target,
)
from compscope.testing._physics import random_rotation

from .conftest import SHARED_BG

DTYPES = [torch.float32, torch.float64]


def _rotation(dim: int, gen: torch.Generator, reflect: bool) -> torch.Tensor:
    if dim == 3:
        return random_rotation(gen, reflect=reflect)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q  # O(dim): a rotation or a reflection


def test_dw4_energy_by_hand():
    # two particles at distance d0 + 1 and two far away along a line: only pair energies, computed by hand
    x = torch.tensor([[[0.0, 0.0], [5.0, 0.0], [0.0, 3.0], [5.0, 3.0]]], dtype=torch.float64)
    d = [5.0, 3.0, math.hypot(5, 3), math.hypot(5, 3), 3.0, 5.0]
    expected = sum(0.9 * (r - 4) ** 4 - 4 * (r - 4) ** 2 for r in d)
    assert DoubleWell4().energy(x).item() == pytest.approx(expected, rel=1e-12)


def test_lj_ordered_pairs_and_oscillator():
    # a dimer at the pair minimum rm = 1: ordered pairs give 2 * (-eps); the oscillator 0.5 * 2 * 0.5^2
    target = LennardJones(n_particles=2)
    x = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    assert target.energy(x).item() == pytest.approx(-2.0 + 0.25, rel=1e-12)
    assert LennardJones(2, oscillator=False).energy(x).item() == pytest.approx(-2.0, rel=1e-12)


def test_fixture_energies_match_the_readme(dw4_frames, lj13_frames):
    # the README's means are over the full 10^4-frame test splits; the 300-frame fixtures agree within 5 SE
    u = DoubleWell4().energy(dw4_frames)
    assert abs(u.mean().item() - (-22.45)) < 5 * 1.90 / math.sqrt(len(u))
    u = get_target("lj13").energy(lj13_frames)
    assert abs(u.mean().item() - (-43.13)) < 5 * 7.02 / math.sqrt(len(u))


@pytest.mark.skipif(not (SHARED_BG / "lj13_test.npy").exists(), reason="shared/data/bg not present")
def test_full_test_splits_match_the_readme():
    for name, n, d, mean, sd in [("dw4", 4, 2, -22.45, 1.90), ("lj13", 13, 3, -43.13, 7.02)]:
        x = torch.as_tensor(np.load(SHARED_BG / f"{name}_test.npy"), dtype=torch.float64).reshape(-1, n, d)
        u = get_target(name).energy(x)
        assert u.mean().item() == pytest.approx(mean, abs=0.005)
        assert u.std().item() == pytest.approx(sd, abs=0.005)


def _fd_check(target, x, eps, rtol):
    u, f = target.energy_and_force(x)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        v = v / v.norm()
        fd = (target.energy(x + eps * v) - target.energy(x - eps * v)) / (2 * eps)  # (batch,)
        exact = -(f * v).sum((1, 2))
        scale = f.reshape(len(f), -1).norm(dim=1) + 1.0
        assert torch.allclose(fd, exact, atol=rtol * scale.max().item()), (fd - exact).abs().max()
    return u, f


@pytest.mark.parametrize("dtype", DTYPES)
def test_forces_are_minus_gradient(dtype, dw4_frames, lj13_frames):
    # central differences: error O(eps^2 f''') + O(machine eps * |u| / eps)
    eps, rtol = (1e-3, 2e-2) if dtype == torch.float32 else (1e-5, 1e-6)
    u, f = _fd_check(DoubleWell4(), dw4_frames[:20].to(dtype), eps, rtol)
    assert u.dtype == dtype and f.dtype == dtype and f.shape == (20, 4, 2)
    _fd_check(get_target("lj13"), lj13_frames[:20].to(dtype), eps, rtol)
    gmm = GaussianMixture([[0.0, 0.0], [2.0, 1.0]], [0.5, 1.0], [0.3, 0.7])
    _fd_check(gmm, torch.randn(10, 1, 2, dtype=dtype), eps, rtol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_invariance(name, dtype, dw4_frames, lj13_frames):
    target = get_target(name)
    x = (dw4_frames if name == "dw4" else lj13_frames)[:16].to(dtype)
    gen = torch.Generator().manual_seed(0)
    u, f = target.energy_and_force(x)
    # float32: rounding of the positions (|x| ~ 3 after the shift) is amplified by the LJ wall's curvature
    scale = f.abs().max().item() + 1.0
    tol = dict(rtol=1e-4, atol=2e-5 * scale) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-11 * scale)
    for reflect in (False, True):
        q = _rotation(target.dim, gen, reflect).to(dtype)
        t = torch.randn(1, 1, target.dim, generator=gen, dtype=torch.float64).to(dtype) * 3
        u2, f2 = target.energy_and_force(x @ q.T + t)
        torch.testing.assert_close(u2, u, **tol)  # invariant energy
        torch.testing.assert_close(f2, f @ q.T, **tol)  # equivariant force
    perm = torch.randperm(target.n_particles, generator=gen)
    u3, f3 = target.energy_and_force(x[:, perm])
    torch.testing.assert_close(u3, u, **tol)
    torch.testing.assert_close(f3, f[:, perm], **tol)


def test_translation_invariant_forces_sum_to_zero(lj13_frames):
    _, f = get_target("lj13").energy_and_force(lj13_frames[:8])
    assert f.sum(1).abs().max() < 1e-9


def test_gaussian_mixture_is_normalised_and_exact():
    gmm = GaussianMixture([[-2.0], [1.5]], [0.5, 1.0], [0.25, 0.75])
    grid = torch.linspace(-10, 12, 20001, dtype=torch.float64)[:, None, None]
    p = gmm.log_prob(grid).exp()
    dx = grid[1, 0, 0] - grid[0, 0, 0]
    assert torch.trapezoid(p, dx=dx).item() == pytest.approx(1.0, abs=1e-10)
    assert torch.trapezoid(p * grid.flatten(), dx=dx).item() == pytest.approx(gmm.mean().item(), abs=1e-9)
    var = torch.trapezoid(p * (grid.flatten() - gmm.mean()) ** 2, dx=dx).item()
    assert var == pytest.approx(gmm.covariance().item(), abs=1e-9)
    # a 2-particle 2D event shape: flat means are reshaped
    g2 = GaussianMixture(torch.zeros(3, 4), [1.0, 2.0, 3.0], n_particles=2)
    assert g2.event_shape == (2, 2) and g2.sample(5).shape == (5, 2, 2)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 5, 2), r"shape \(3, 5, 2\)"),
    (torch.zeros(3, 4, 3), "shape"),
    (torch.zeros(3, 4, 2, dtype=torch.long), "floating point"),
    (torch.full((2, 4, 2), float("nan")), "NaN"),
])
def test_bad_positions(bad, match):
    with pytest.raises(SamplingInputError, match=match) as err:
        DoubleWell4().energy(bad)
    assert err.value.hint


def test_shapes_accepted():
    t = DoubleWell4()
    x = torch.randn(5, 4, 2, dtype=torch.float64)
    assert torch.equal(t.energy(x.reshape(5, 8)), t.energy(x))
    assert t.energy(x[0]).shape == (1,)
    with pytest.raises(SamplingInputError, match="unknown target"):
        get_target("lj7")


@pytest.fixture(scope="module")
def tiny_model():
    from compscope.models import build_model

    torch.manual_seed(0)
    return build_model(name="EquivariantPotential", preset="tiny", species=[1, 6, 8], r_max=4.0).double()


def test_force_field_target_in_kT(tiny_model):
    from ase import Atoms
    from ase.units import kB

    from compscope.data import AtomicGraph

    z = [6, 8, 1, 1, 1]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 3, generator=gen, dtype=torch.float64) * 0.8
    target = ForceFieldTarget(tiny_model, z, temperature=300.0)
    u, f = target.energy_and_force(x)
    for i in range(3):
        g = AtomicGraph.from_atoms(Atoms(numbers=z, positions=x[i].numpy()), cutoff=4.0)
        ref = tiny_model(g, compute_forces=True)
        assert u[i].item() == pytest.approx(ref["energy"].item() / (kB * 300.0), rel=1e-10)
        torch.testing.assert_close(f[i], ref["forces"] / (kB * 300.0), rtol=1e-9, atol=1e-9)
    _fd_check(target, x, 1e-5, 1e-6)
    q = random_rotation(gen).double()
    torch.testing.assert_close(target.energy(x @ q.T + 1.0), u, rtol=1e-10, atol=1e-9)
    with pytest.raises(SamplingInputError, match="temperature"):
        ForceFieldTarget(tiny_model, z, temperature=0)
