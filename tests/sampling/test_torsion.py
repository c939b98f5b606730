"""Torsion-space kernels: pivots keep the geometry, the torus density is normalised, the MH chain is exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compscope.sampling import (
    LargeStepMH,
    SamplingInputError,
    TorsionProposal,
    TorusKernel,
    alanine_dipeptide,
    dihedral_angles,
    pivot_groups,
    set_dihedrals,
)
from compscope.sampling._targets import Target


def _ala2_start(dtype):
    from compscope.integrations.openmm_systems import alanine_dipeptide_system

    pdb, _ = alanine_dipeptide_system()
    return torch.as_tensor(np.asarray(pdb.getPositions(asNumpy=True)._value) * 10.0, dtype=dtype)


def _angle(a, b, c):
    u, v = a - b, c - b
    return torch.atan2(torch.cross(u, v, dim=-1).norm(dim=-1), (u * v).sum(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pivots_set_phi_psi_and_keep_every_bond_and_angle(dtype):
    target = alanine_dipeptide()
    bonds = target.bonds()
    dih = [target.phi_psi[0], target.phi_psi[1]]
    groups = pivot_groups(target.n_particles, bonds, dih)
    assert 9 in groups[0] and 16 in groups[1] and 1 not in groups[0] and 7 not in groups[1]
    x = _ala2_start(dtype)[None].repeat(5, 1, 1)
    want = torch.tensor([[-2.5, 2.8], [1.0, -0.7], [0.0, 0.0], [3.1, -3.1], [-1.4, 1.2]], dtype=torch.float64)
    y = set_dihedrals(x, dih, groups, want)
    got = torch.stack([dihedral_angles(y, d) for d in dih], -1).double()
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.remainder(got - want + math.pi, 2 * math.pi).sub(math.pi).abs().max() < tol
    b = torch.tensor(bonds)
    length = lambda z: (z[:, b[:, 0]] - z[:, b[:, 1]]).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(length(y), length(x), atol=10 * tol, rtol=0)
    angles = [(a, c, d) for a, c in bonds for d in range(target.n_particles)
              if (c, d) in bonds or (d, c) in bonds if d != a]
    ang = lambda z: torch.stack([_angle(z[:, i], z[:, j], z[:, k]) for i, j, k in angles], -1)  # noqa: E731
    torch.testing.assert_close(ang(y), ang(x), atol=10 * tol, rtol=0)


def test_pivot_groups_refuse_rings_and_non_bonds():
    ring = [(0, 1), (1, 2), (2, 3), (3, 0), (3, 4)]
    with pytest.raises(SamplingInputError, match="ring"):
        pivot_groups(5, ring, [(0, 1, 2, 3)])
    with pytest.raises(SamplingInputError, match="not bonded"):
        pivot_groups(5, ring, [(4, 0, 2, 1)])
    assert pivot_groups(4, [(0, 1), (1, 2), (2, 3)], [(0, 1, 2, 3)]) == [[3]]


def test_torus_kernel_is_normalised_and_samples_its_density():
    torch.manual_seed(0)
    k2 = TorusKernel(2, n_components=4, hidden=16, uniform=0.05).double()
    with torch.no_grad():
        for p in k2.parameters():
            p.add_(0.7 * torch.randn_like(p))
    g = torch.linspace(-math.pi, math.pi, 301, dtype=torch.float64)[:-1]
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    a0 = torch.tensor([[0.3, -2.0]], dtype=torch.float64)
    mass = k2.log_prob(grid, a0.expand(len(grid), -1)).detach().exp().sum() * (2 * math.pi / 300) ** 2
    assert mass.item() == pytest.approx(1.0, abs=2e-3)
    k1 = TorusKernel(1, n_components=3, hidden=8, uniform=0.1).double()
    with torch.no_grad():
        for p in k1.parameters():
            p.add_(0.7 * torch.randn_like(p))
    a, lq = k1.sample(torch.zeros(1, 1, dtype=torch.float64), 40000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lq[0], k1.log_prob(a[0], torch.zeros(40000, 1, dtype=torch.float64)))
    edges = np.linspace(-np.pi, np.pi, 21)
    hist = np.histogram(a[0, :, 0].numpy(), edges)[0] / 40000
    fine = torch.linspace(-math.pi, math.pi, 20001, dtype=torch.float64)
    dens = k1.log_prob(fine[:, None], torch.zeros(len(fine), 1, dtype=torch.float64)).exp().detach().numpy()
    cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(fine.numpy()))])
    assert np.abs(hist - np.diff(np.interp(edges, fine.numpy(), cdf))).max() < 0.01


class _Chain4(Target):
    """Four atoms in a chain: stiff bonds, a fixed angle 0-1-2, the angle 1-2-3 pulled towards
    ``1.9 + 0.6 cos(phi)`` and a torsion term. In Z-matrix coordinates the Cartesian measure carries
    ``sin(theta_123)``, so the exact marginal of phi is ``exp(-U_t(phi)) * int sin(t) exp(-20 (t - t0(phi))^2) dt``:
    a pivot move with a Jacobian error would miss it."""

    name, n_particles, dim = "chain4", 4, 3

    def _energy(self, x):
        bonds = sum(100.0 * ((x[:, i + 1] - x[:, i]).norm(dim=-1) - 1.5) ** 2 for i in range(3))
        phi = dihedral_angles(x, (0, 1, 2, 3))
        return (bonds + 30.0 * (_angle(x[:, 0], x[:, 1], x[:, 2]) - 1.9) ** 2
                + 20.0 * (_angle(x[:, 1], x[:, 2], x[:, 3]) - 1.9 - 0.6 * torch.cos(phi)) ** 2
                + torch.cos(phi) + 0.5 * torch.cos(2 * phi))


def _exact_phi(edges):
    th, ph = np.linspace(0, np.pi, 2001), np.linspace(-np.pi, np.pi, 4001)
    w = np.exp(-np.cos(ph) - 0.5 * np.cos(2 * ph)) * np.trapezoid(
        np.sin(th)[None] * np.exp(-20 * (th[None] - 1.9 - 0.6 * np.cos(ph)[:, None]) ** 2), th, axis=1)
    c = np.concatenate([[0], np.cumsum((w[1:] + w[:-1]) / 2 * np.diff(ph))])
    return np.diff(np.interp(edges, ph, c / c[-1]))


#: the start of every 4-atom chain (phi near 0.6 rad) and the phi bins of the exact-marginal tests
_X0 = torch.tensor([[0.0, 0, 0], [1.5, 0, 0], [2.0, 1.41, 0], [3.5, 1.5, 0.3]], dtype=torch.float64)
_EDGES = np.linspace(-np.pi, np.pi, 25)


def _phi_error(mh):
    """256 chains of ``mh`` on the 4-atom target for 110 cycles (30 burn-in, generator seed 0): the final state and
    the largest deviation of the kept phi histogram from the exact marginal."""
    target, gen = _Chain4(), torch.Generator().manual_seed(0)
    state = mh.init(target, _X0[None].repeat(256, 1, 1))
    kept = []
    for cycle in range(110):
        state = mh.step(target, state, gen)
        if cycle >= 30:
            kept.append(dihedral_angles(state.x, (0, 1, 2, 3)))
    hist = np.histogram(torch.cat(kept).numpy(), _EDGES)[0] / (80 * 256)
    return state, np.abs(hist - _exact_phi(_EDGES)).max()


def test_torsion_mh_samples_the_exact_marginal_and_exploration_does_not():
    """A deliberately asymmetric, state-dependent kernel (random weights): only the MH correction with the
    forward and reverse torus densities (and no Jacobian term) gives the exact phi marginal."""
    torch.manual_seed(1)
    kernel = TorusKernel(1, n_components=3, hidden=16, uniform=0.2).double()
    with torch.no_grad():
        for p in kernel.parameters():
            p.add_(0.5 * torch.randn_like(p))
    prop = TorsionProposal(kernel, [(0, 1, 2, 3)], pivot_groups(4, [(0, 1), (1, 2), (2, 3)], [(0, 1, 2, 3)]))
    errors = {}
    for metropolize in (True, False):
        mh = LargeStepMH(prop, n_proposals=1, n_local=4, local={"step_size": 2e-3}, metropolize=metropolize)
        state, errors[metropolize] = _phi_error(mh)
        if metropolize:
            assert 0.05 < state.acceptance.mean() < 0.9
    # run-to-run spread of the exact chain (generator seeds 0-4): max |dp| 0.004-0.009; exploration: 0.066
    assert errors[True] < 0.025 < errors[False], errors


def test_torsion_kernel_trains_loads_and_runs_a_chain(tmp_path):
    from compscope.models.artifacts import ArtifactNotFoundError
    from compscope.sampling import load_torsion_kernel, sample_chain, train_torsion_kernel

    target = alanine_dipeptide()
    dih = [target.phi_psi[0], target.phi_psi[1]]
    groups = pivot_groups(target.n_particles, target.bonds(), dih)
    g = torch.Generator().manual_seed(0)
    a0 = torch.rand(3000, 2, generator=g, dtype=torch.float64) * 2 * math.pi - math.pi
    a1 = torch.remainder(a0 + 0.2 * torch.randn(3000, 2, generator=g, dtype=torch.float64) + math.pi,
                         2 * math.pi) - math.pi
    pairs = {"train": (a0[:2500], a1[:2500]), "valid": (a0[2500:], a1[2500:]), "lag_frames": 1, "frame_ps": 1.0,
             "replicas": {"train": ["t"], "valid": ["v"], "test": []}}
    kernel, _ = train_torsion_kernel(pairs, tmp_path / "run", dih, groups, target.n_particles,
                                     kernel={"n_components": 4, "hidden": 32, "uniform": 0.05}, batch_size=128,
                                     trainer={"max_epochs": 12, "progress_bar": False})
    nll = -kernel.log_prob(a1[2500:], a0[2500:]).mean().item() / 2
    # a random walk with sd 0.2 per angle: 0.5 log(2 pi e 0.04) = -0.19 nats per angle; uniform: log(2 pi) = 1.84
    assert nll < 0.3, nll
    prop, meta = load_torsion_kernel(tmp_path / "run", system="alanine-dipeptide", n_atoms=22)
    assert meta["lag_ps"] == 1.0 and prop.dihedrals == [tuple(d) for d in dih]
    with pytest.raises(SamplingInputError, match="not 'dw4'"):
        load_torsion_kernel(tmp_path / "run", system="dw4")
    with pytest.raises(SamplingInputError, match="22 atoms, not 10"):
        load_torsion_kernel(tmp_path / "run" / "model.pt", n_atoms=10)
    with pytest.raises(ArtifactNotFoundError):
        load_torsion_kernel(tmp_path / "nothing")
    res = sample_chain(tmp_path / "run", "alanine-dipeptide", 12, 2, tmp_path / "chain.h5", burn_in=2,
                       n_proposals=4, n_local=2, local_step_size=1e-4)
    assert res.positions.shape == (10, 2, 22, 3) and res.counters["mh_steps"] == 2 * 12 * 4
    assert res.counters["accepted"] > 0 and np.isfinite(res.energy).all()


def test_reusable_independence_kernel_uses_every_draw_and_samples_the_exact_marginal():
    """An unconditional torus kernel makes the pivot move an independence sampler in phi: the k draws of a batch
    serve k sequential MH steps (none discarded). Its phi histogram matches the exact marginal, and its
    acceptance per MH step equals that of the chain that draws one proposal per step (the same Markov chain)."""
    torch.manual_seed(3)
    kernel = TorusKernel(1, n_components=3, hidden=16, uniform=0.2, conditional=False).double()
    with torch.no_grad():
        for p in kernel.parameters():
            p.add_(0.5 * torch.randn_like(p))
    prop = TorsionProposal(kernel, [(0, 1, 2, 3)], pivot_groups(4, [(0, 1), (1, 2), (2, 3)], [(0, 1, 2, 3)]))
    assert prop.reusable and prop.independent
    out = {}
    for k in (8, 1):
        mh = LargeStepMH(prop, n_proposals=k, mh_steps=8, n_local=2, local={"step_size": 2e-3})
        state, err = _phi_error(mh)
        assert state.mh_steps.eq(8 * 110).all() and state.proposals.eq(8 * 110).all()  # no draw discarded
        out[k] = (err, state.accepted.sum().item() / state.mh_steps.sum().item())
    # run-to-run spread (generator seeds 0-3): max |dp| 0.006-0.018 for both (the bond angle coupled to phi relaxes
    # only by the MALA steps), acceptance 0.243-0.252
    assert out[8][0] < 0.025 and out[1][0] < 0.025, out
    assert 0.1 < out[8][1] < 0.9 and abs(out[8][1] - out[1][1]) < 0.02, out
