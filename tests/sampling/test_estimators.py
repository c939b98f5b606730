"""Boltzmann-generator estimators on cases with analytic answers: Gaussian proposal vs Gaussian target (closed-form
ESS and moments), Wasserstein distances against closed forms and scipy, NaN/inf handling, reweighted profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from compscope.sampling import (
    SamplingInputError,
    energy_histogram,
    free_energy_difference,
    free_energy_profile,
    importance_weights,
    kish_ess,
    reweighted_mean,
    wasserstein_1d,
)


def _gauss_proposals(n, s, d, seed=0, mu=0.0):
    """x ~ q = N(mu, s^2 I_d); target p ∝ exp(-|x|^2/2) (u = |x|^2/2, unnormalised); exact log q."""
    rng = np.random.default_rng(seed)
    x = mu + s * rng.standard_normal((n, d))
    log_q = -0.5 * (((x - mu) / s) ** 2).sum(1) - d * math.log(s) - 0.5 * d * math.log(2 * math.pi)
    return x, 0.5 * (x**2).sum(1), log_q


@pytest.mark.parametrize("s,d", [(1.5, 1), (1.3, 3), (0.9, 2)])
def test_kish_ess_matches_closed_form(s, d):
    # n_eff / n -> E_q[w]^2 / E_q[w^2] = (sqrt(2 s^2 - 1) / s^2)^d for q = N(0, s^2), p = N(0, 1)
    x, u, log_q = _gauss_proposals(200_000, s, d)
    iw = importance_weights(u, log_q)
    exact = (math.sqrt(2 * s * s - 1) / s**2) ** d
    assert iw.n_invalid == 0
    assert iw.ess == pytest.approx(exact, rel=0.03)
    assert kish_ess(iw.log_w) == iw.ess
    # the weights are exact up to a constant: log w + log q + u = 0
    np.testing.assert_allclose(iw.log_w, -u - log_q)


def test_perfect_proposal_has_full_ess():
    x, u, log_q = _gauss_proposals(1000, 1.0, 2)
    assert kish_ess(importance_weights(u, log_q).log_w) == pytest.approx(1.0, abs=1e-12)


def test_reweighted_moments_and_error_bars():
    # proposals from N(0.5, 1.4^2) reweighted to N(0, 1): E[x] = 0, E[x^2] = 1; the delta-method se covers the
    # error across independent replicas and agrees with the bootstrap
    errs, ses = [], []
    for seed in range(20):
        x, u, log_q = _gauss_proposals(4000, 1.4, 1, seed=seed, mu=0.5)
        lw = importance_weights(u, log_q).log_w
        m, se = reweighted_mean(x[:, 0], lw)
        errs.append(m)
        ses.append(se)
    errs, ses = np.array(errs), np.array(ses)
    assert abs(errs.mean()) < 4 * errs.std(ddof=1) / math.sqrt(len(errs))
    assert ses.mean() == pytest.approx(errs.std(ddof=1), rel=0.4)
    x, u, log_q = _gauss_proposals(4000, 1.4, 1, seed=99, mu=0.5)
    lw = importance_weights(u, log_q).log_w
    m2, se2 = reweighted_mean(x[:, 0] ** 2, lw)
    assert m2 == pytest.approx(1.0, abs=5 * se2)
    mb, seb = reweighted_mean(x[:, 0], lw, error="bootstrap", n_boot=300)
    md, sed = reweighted_mean(x[:, 0], lw)
    assert mb == md and seb == pytest.approx(sed, rel=0.25)
    # unweighted: the ordinary standard error
    m0, se0 = reweighted_mean(x[:, 0])
    assert se0 == pytest.approx(x[:, 0].std() / math.sqrt(len(x)), rel=1e-9)


def test_nan_and_inf_energies_are_excluded_and_counted():
    x, u, log_q = _gauss_proposals(5000, 1.3, 2, seed=1)
    clean = importance_weights(u, log_q)
    bad_u, bad_q = u.copy(), log_q.copy()
    bad_u[[3, 10]] = np.nan
    bad_u[7] = np.inf
    bad_q[20] = -np.inf
    iw = importance_weights(bad_u, bad_q)
    assert iw.n_invalid == 4 and (~iw.valid).sum() == 4
    assert np.isfinite(iw.log_w).sum() == 4996 and np.all(np.isneginf(iw.log_w[[3, 7, 10, 20]]))
    w = iw.normalized()
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0) and np.all(w[[3, 7, 10, 20]] == 0)
    assert iw.ess == pytest.approx(clean.ess, rel=0.01)  # four zero-weight proposals out of 5000
    vals = x[:, 0].copy()
    vals[3] = np.nan  # a NaN observable on an excluded proposal is ignored
    m, se = reweighted_mean(vals, iw.log_w)
    assert np.isfinite(m) and np.isfinite(se)
    with pytest.raises(SamplingInputError, match="non-zero weight"):
        vals[0] = np.nan
        reweighted_mean(vals, iw.log_w)
    with pytest.raises(SamplingInputError, match="zero weight"):
        kish_ess(importance_weights(np.full(3, np.nan), np.zeros(3)).log_w)
    with pytest.raises(SamplingInputError, match="NaN"):
        kish_ess(np.array([0.0, np.nan]))
    with pytest.raises(SamplingInputError, match="log_q"):
        importance_weights(u, log_q[:-1])


def test_wasserstein_closed_form_and_scipy():
    rng = np.random.default_rng(0)
    a = 1.0 + 2.0 * rng.standard_normal(100_000)
    b = -0.5 + 1.5 * rng.standard_normal(100_000)
    # Gaussians: W2^2 = (m1 - m2)^2 + (s1 - s2)^2
    assert wasserstein_1d(a, b, p=2) == pytest.approx(math.hypot(1.5, 0.5), rel=0.01)
    assert wasserstein_1d(a, b, p=1) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)
    # unequal sizes and weights, against scipy's weighted W1
    c, wc = rng.standard_normal(777), rng.uniform(0.1, 2.0, 777)
    d = 0.3 + rng.standard_normal(1234)
    got = wasserstein_1d(c, d, p=1, log_w_a=np.log(wc))
    assert got == pytest.approx(stats.wasserstein_distance(c, d, u_weights=wc), rel=1e-9)
    assert wasserstein_1d(a, a, p=2) == 0.0
    # non-finite energies dropped
    a2 = a.copy()
    a2[:5] = np.nan
    assert np.isfinite(wasserstein_1d(a2, b, p=2))


def test_reweighted_w2_recovers_the_target():
    # flow = N(0, 1.3^2) proposal, reference = exact N(0, 1) draws of x^2/2 energies: reweighting closes the gap
    x, u, log_q = _gauss_proposals(50_000, 1.3, 2, seed=3)
    ref = 0.5 * (np.random.default_rng(4).standard_normal((50_000, 2)) ** 2).sum(1)
    lw = importance_weights(u, log_q).log_w
    raw, rew = wasserstein_1d(u, ref, p=2), wasserstein_1d(u, ref, p=2, log_w_a=lw)
    assert raw > 0.3 and rew < 0.05
    edges, dens = energy_histogram(u, bins=40, range=(0, 8), log_w=lw)
    centres = 0.5 * (edges[1:] + edges[:-1])
    np.testing.assert_allclose(dens[:10], np.exp(-centres[:10]), atol=0.05)  # u ~ Exp(1) in 2D


def test_free_energy_profile_of_a_gaussian():
    # p(x) ∝ exp(-x^2/2) from reweighted N(0.3, 1.3^2) proposals: F(x) = x^2/2 + const within the error bars
    x, u, log_q = _gauss_proposals(100_000, 1.3, 1, seed=5, mu=0.3)
    prof = free_energy_profile(x[:, 0], bins=20, range=(-2.0, 2.0), log_w=importance_weights(u, log_q).log_w)
    c, f, se = prof["centres"], prof["free_energy"], prof["se"]
    exact = 0.5 * c**2
    # compare after matching the constant (mean offset) over bins
    off = np.average(f - exact, weights=1 / se**2)
    z = (f - exact - off) / se
    assert np.abs(z).max() < 4.5 and np.all(se < 0.1)
    assert prof["prob"].sum() == pytest.approx(stats.norm.cdf(2) - stats.norm.cdf(-2), abs=0.01)
    assert np.nanmin(f) == 0.0


def test_free_energy_difference_of_two_half_lines():
    # target N(0, 1) from N(0.5, 1.3^2) proposals: B = {x > 1}, A = {x < 0}: dF = -log(P(B) / P(A)) exactly
    exact = -math.log(stats.norm.sf(1.0) / stats.norm.cdf(0.0))
    zs, ses = [], []
    for seed in range(10):
        x, u, log_q = _gauss_proposals(5000, 1.3, 1, seed=seed, mu=0.5)
        df, se = free_energy_difference(x[:, 0] < 0, x[:, 0] > 1, importance_weights(u, log_q).log_w)
        zs.append((df - exact) / se)
        ses.append(se)
    zs = np.array(zs)
    assert np.abs(zs).max() < 4 and abs(zs.mean()) < 4 / math.sqrt(len(zs)) * 1.5 and 0.4 < zs.std() < 2.0
    with pytest.raises(SamplingInputError, match="no weight"):
        free_energy_difference(x[:, 0] < -100, x[:, 0] > 0)
