"""MCMC: detailed balance of each move on random pairs, invariance and convergence on Gaussian mixtures with exact
moments (tolerances from the central limit theorem), resume, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from compscope.errors import ResumeError, RunExistsError
from compscope.sampling import HMC, MALA, DoubleWell4, GaussianMixture, SamplingInputError, Target, run_mcmc
from compscope.sampling._mcmc import ChainState

GMM2 = GaussianMixture([[-1.0, 0.5], [1.5, -0.5], [0.0, 2.0]], [0.5, 0.8, 0.6], [0.3, 0.5, 0.2])


def _log_transition_mala(s: MALA, t: Target, x, x2, h):
    """log p(x) + log q(x2 | x) + log a(x -> x2) of the sampler's own functions."""
    u, f = t.energy_and_force(x)
    u2, f2 = t.energy_and_force(x2)
    log_a = s.log_accept_ratio(t, x, u, f, x2, u2, f2, h).clamp(max=0.0)
    return -u.double() + s.log_q(t, x2, x, f, h) + log_a


@pytest.mark.parametrize("max_drift", [None, 0.05])
@pytest.mark.parametrize("case", ["gmm", "dw4"])
def test_mala_detailed_balance_on_random_pairs(case, max_drift):
    gen = torch.Generator().manual_seed(0)
    if case == "gmm":
        t, x = GMM2, GMM2.sample(64, gen)
        x2 = x + 0.4 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    else:  # translation invariant: pairs in the centre-of-mass-free subspace
        t = DoubleWell4()
        x = torch.randn(64, 4, 2, generator=gen, dtype=torch.float64) * 2
        x = x - x.mean(1, keepdim=True)
        x2 = x + 0.3 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        x2 = x2 - x2.mean(1, keepdim=True) + x.mean(1, keepdim=True)
    s, h = MALA(max_drift=max_drift), torch.tensor(0.05, dtype=torch.float64)
    fwd = _log_transition_mala(s, t, x, x2, h)
    rev = _log_transition_mala(s, t, x2, x, h)
    assert torch.isfinite(fwd).all()
    torch.testing.assert_close(fwd, rev, rtol=0, atol=1e-10)
    # without the Metropolis factor the balance fails (the test can fail)
    u, f = t.energy_and_force(x)
    u2, f2 = t.energy_and_force(x2)
    raw_f = -u + s.log_q(t, x2, x, f, h)
    raw_r = -u2 + s.log_q(t, x, x2, f2, h)
    assert (raw_f - raw_r).abs().max() > 1e-2


def test_hmc_move_is_reversible_volume_preserving_and_balanced():
    t, s = DoubleWell4(), HMC(n_leapfrog=5)
    h = torch.tensor(0.05, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 2, generator=gen, dtype=torch.float64) * 2
    p = torch.randn(1, 4, 2, generator=gen, dtype=torch.float64)
    u, f = t.energy_and_force(x)
    x2, p2, u2, f2 = s.leapfrog(t, x, p, f, h)
    # reversibility: from (x', -p') the leapfrog returns to (x, -p)
    x3, p3, u3, _ = s.leapfrog(t, x2, -p2, f2, h)
    torch.testing.assert_close(x3, x, rtol=0, atol=1e-11)
    torch.testing.assert_close(p3, -p, rtol=0, atol=1e-11)
    # balance: exp(-H(x, p)) a(x,p -> x',p') = exp(-H(x', -p')) a(x',-p' -> x,-p)
    a_f = s.log_accept_ratio(u, p, u2, p2).clamp(max=0)
    a_r = s.log_accept_ratio(u2, -p2, u3, p3).clamp(max=0)
    h_f = u + 0.5 * p.pow(2).sum((1, 2))
    h_r = u2 + 0.5 * p2.pow(2).sum((1, 2))
    torch.testing.assert_close(-h_f + a_f, -h_r + a_r, rtol=0, atol=1e-10)
    # volume preservation: det of the map's Jacobian (central differences in float64) is 1
    z = torch.cat([x.flatten(), p.flatten()])

    def phi(z):
        xx, pp = z[:8].reshape(1, 4, 2), z[8:].reshape(1, 4, 2)
        _, ff = t.energy_and_force(xx)
        a, b, _, _ = s.leapfrog(t, xx, pp, ff, h)
        return torch.cat([a.flatten(), b.flatten()])

    eps = 1e-5
    jac = torch.stack([(phi(z + eps * e) - phi(z - eps * e)) / (2 * eps) for e in torch.eye(16, dtype=z.dtype)], 1)
    assert torch.linalg.det(jac).item() == pytest.approx(1.0, abs=1e-6)


def _moment_check(samples: torch.Tensor, gmm: GaussianMixture, n_se: float = 5.0) -> None:
    """Mean and second moments of independent samples against the exact ones, within ``n_se`` standard errors
    (each SE from the samples' own spread: the central limit theorem; P(|z| > 5) ~ 6e-7 per statistic)."""
    y = samples.reshape(len(samples), -1)
    n = len(y)
    mu = gmm.mean()
    cov = gmm.covariance()
    stats_ = [(y, mu)]
    for i in range(y.shape[1]):
        for j in range(i, y.shape[1]):
            prod = (y[:, i] - mu[i]) * (y[:, j] - mu[j])
            stats_.append((prod[:, None], cov[i, j].reshape(1)))
    for values, exact in stats_:
        est = values.mean(0)
        se = values.std(0) / math.sqrt(n)
        z = (est - exact) / se
        assert z.abs().max() < n_se, (est, exact, z)


@pytest.mark.parametrize("sampler", [MALA(step_size=0.15), MALA(step_size=0.15, max_drift=0.2),
                                     HMC(step_size=0.7, n_leapfrog=4)], ids=["mala", "mala-cap", "hmc"])
def test_chains_started_exact_stay_exact(sampler):
    # the target is invariant under each exact move: chains started from exact samples are exact after k moves
    gen = torch.Generator().manual_seed(2)
    x0 = GMM2.sample(4000, gen)
    res = run_mcmc(GMM2, x0, sampler, n_steps=15, burn_in=0, thin=15, seed=3)
    assert res.positions.shape == (1, 4000, 1, 2)
    assert 0.2 < res.acceptance.mean() < 0.95
    _moment_check(res.positions[-1], GMM2)


def test_unadjusted_langevin_is_caught():
    # the same moment check rejects ULA at this step size (variance inflated by ~1 / (1 - h / (2 s^2)))
    gmm = GaussianMixture([[0.0, 0.0]], [0.5])
    gen = torch.Generator().manual_seed(2)
    res = run_mcmc(gmm, gmm.sample(4000, gen), MALA(step_size=0.1, metropolize=False), n_steps=15, thin=15)
    with pytest.raises(AssertionError):
        _moment_check(res.positions[-1], gmm)
    res = run_mcmc(gmm, gmm.sample(4000, gen), MALA(step_size=0.1), n_steps=15, thin=15)
    _moment_check(res.positions[-1], gmm)


@pytest.mark.parametrize("sampler", ["mala", "hmc"])
def test_converges_from_a_point_to_a_bimodal_mixture(sampler):
    # 1D, two modes: 2000 independent chains from x = 0, burn-in with adaptation, then the final states against
    # the exact CDF (Kolmogorov-Smirnov, p > 1e-4) and moments
    gmm = GaussianMixture([[-1.5], [1.5]], [0.7, 0.7], [0.4, 0.6])
    x0 = torch.zeros(2000, 1, 1, dtype=torch.float64)
    res = run_mcmc(gmm, x0, {"name": sampler, "step_size": 0.1}, n_steps=300, burn_in=100, thin=200, seed=5)
    final = res.positions[-1].flatten()

    def cdf(v):
        w, m, s = gmm.weights.numpy(), gmm.means[:, 0].numpy(), gmm.stds.numpy()
        return sum(wi * stats.norm.cdf(v, mi, si) for wi, mi, si in zip(w, m, s))

    assert stats.kstest(final.numpy(), cdf).pvalue > 1e-4
    _moment_check(res.positions[-1], gmm)


def test_float32_chains():
    gen = torch.Generator().manual_seed(0)
    x0 = GMM2.sample(2000, gen, dtype=torch.float32)
    res = run_mcmc(GMM2, x0, MALA(step_size=0.15), n_steps=10, thin=10)
    assert res.positions.dtype == torch.float32 and res.energy.dtype == torch.float32
    _moment_check(res.positions[-1].double(), GMM2)


def test_resume_gives_the_same_samples(tmp_path):
    t = DoubleWell4()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 4, 2, generator=gen, dtype=torch.float64) * 2
    kw = dict(sampler={"name": "mala", "step_size": 0.01}, burn_in=10, thin=3, seed=7, checkpoint_every=10)
    full = run_mcmc(t, x0, n_steps=50, out=tmp_path / "a", **kw)
    assert full.positions.shape == (13, 16, 4, 2)

    class Crash(DoubleWell4):  # a real interruption: the energy fails at the 38th call
        calls = 0

        def _energy(self, x):
            Crash.calls += 1
            if Crash.calls == 38:
                raise KeyboardInterrupt
            return super()._energy(x)

    with pytest.raises(KeyboardInterrupt):
        run_mcmc(Crash(), x0, n_steps=50, out=tmp_path / "b", **kw)
    with pytest.raises(RunExistsError):
        run_mcmc(t, x0, n_steps=50, out=tmp_path / "b", **kw)
    with pytest.raises(ResumeError, match="seed"):
        run_mcmc(t, x0, n_steps=50, out=tmp_path / "b", resume=True, **{**kw, "seed": 8})
    part = run_mcmc(t, x0, n_steps=30, out=tmp_path / "b", resume=True, **kw)  # n_steps may change
    assert len(part.positions) == 6  # kept at moves 13, 16, ..., 28 before the checkpoint at 30
    again = run_mcmc(t, x0, n_steps=50, out=tmp_path / "b", resume=True, **kw)
    assert torch.equal(again.positions, full.positions) and torch.equal(again.energy, full.energy)
    assert torch.equal(again.acceptance, full.acceptance)


class _NaNBeyond(Target):
    """A unit Gaussian whose energy is NaN for x > 1.5: proposals there must be rejected, never kept."""

    name, n_particles, dim = "nan-beyond", 1, 1

    def _energy(self, x):
        u = 0.5 * x.pow(2).sum((1, 2))
        return torch.where(x[:, 0, 0] > 1.5, torch.full_like(u, float("nan")), u)


def test_non_finite_proposals_are_rejected():
    res = run_mcmc(_NaNBeyond(), torch.zeros(200, 1, 1, dtype=torch.float64), MALA(step_size=0.5), n_steps=50)
    assert torch.isfinite(res.energy).all() and res.positions.max() <= 1.5
    assert res.acceptance.mean() < 1.0


def test_bad_input():
    t = DoubleWell4()
    bad = torch.zeros(4, 4, 2, dtype=torch.float64)
    bad[1, 2, 0] = float("nan")
    with pytest.raises(SamplingInputError, match="NaN") as err:
        run_mcmc(t, bad, n_steps=2)
    assert err.value.hint
    with pytest.raises(SamplingInputError, match="shape"):
        run_mcmc(t, torch.zeros(4, 3, 2), n_steps=2)
    with pytest.raises(SamplingInputError, match="not finite"):  # two LJ particles on top of each other
        from compscope.sampling import LennardJones

        ChainState.init(LennardJones(2), torch.zeros(1, 2, 3), 0.1)
    with pytest.raises(SamplingInputError, match="unknown sampler"):
        run_mcmc(t, torch.randn(2, 4, 2), "gibbs", n_steps=2)
    with pytest.raises(SamplingInputError, match="step_size"):
        MALA(step_size=-1)
    with pytest.raises(SamplingInputError, match="burn_in"):
        run_mcmc(t, torch.randn(2, 4, 2), n_steps=5, burn_in=5)
    with pytest.raises(SamplingInputError, match="MALA"):
        run_mcmc(t, torch.randn(2, 4, 2), {"name": "mala", "n_leapfrog": 3}, n_steps=2)
