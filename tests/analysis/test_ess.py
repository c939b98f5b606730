"""ESS estimators on AR(1) series, whose autocorrelation time is known exactly: tau = (1 + a) / (1 - a)."""

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from compscope.analysis import (
    AnalysisInputError,
    ar1_autocorrelation_time,
    autocorrelation,
    effective_sample_size,
    ess_batch_means,
    ess_first_zero,
    ess_two_state,
    integrated_autocorrelation_time,
)


def ar1(a: float, n_chains: int, n_steps: int, seed: int) -> np.ndarray:
    """Stationary AR(1) chains with unit variance: x_t = a x_{t-1} + sqrt(1 - a^2) e_t, x_0 ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n_chains, n_steps))
    e[:, 1:] *= np.sqrt(1 - a * a)
    return lfilter([1.0], [1.0, -a], e, axis=1)  # x_t = a x_{t-1} + e_t


@pytest.mark.parametrize("a", [0.0, 0.5, 0.9, 0.97])
@pytest.mark.parametrize("method", ["first_zero", "batch_means"])
def test_ar1_autocorrelation_time(a, method):
    x = ar1(a, 8, 25_000, seed=int(a * 100))
    tau = ar1_autocorrelation_time(a)
    est = integrated_autocorrelation_time(x, method)
    if method == "batch_means":
        # batches of b = sqrt(n) = 158 steps see b var(mean_b) = 1 + 2 sum_{k<b} (1 - k/b) a^k, below tau by
        # ~ 2 a / ((1 - a)^2 b) (20 % at a = 0.97): compare with that exactly, and with tau for long batches
        b = 158
        tau = 1 + 2 * sum((1 - k / b) * a**k for k in range(1, b))
        assert integrated_autocorrelation_time(x, method, batch_size=2500) == pytest.approx(
            ar1_autocorrelation_time(a), rel=0.25)
    # relative standard error of tau is ~ sqrt(2 (2 K + 1) / N) (Sokal) with a window K of a few tau: 2-8 % here
    assert est == pytest.approx(tau, rel=0.12 if a < 0.95 else 0.2)
    ess = effective_sample_size(x, method)
    assert ess == pytest.approx(x.size / est)


def test_autocorrelation_matches_ar1_and_is_pooled():
    x = ar1(0.8, 4, 50_000, seed=1)
    rho = autocorrelation(x, max_lag=5)
    np.testing.assert_allclose(rho, 0.8 ** np.arange(6), atol=0.02)
    # two chains stuck in different states: pooled, they never decorrelate (per-chain centring would hide it)
    stuck = np.stack([np.zeros(1000), np.ones(1000)]) + 1e-3 * np.random.default_rng(0).standard_normal((2, 1000))
    assert ess_first_zero(stuck) < 5
    # batch means cannot see a tau beyond its batch length: it reports about one sample per batch (2 x 31 here)
    assert ess_batch_means(stuck) == pytest.approx(62, rel=0.05)


def test_estimators_agree_with_each_other_and_torch():
    x = ar1(0.9, 4, 20_000, seed=3)
    a, b = ess_first_zero(x), ess_batch_means(x)
    assert a == pytest.approx(b, rel=0.2)
    assert ess_first_zero(torch.as_tensor(x, dtype=torch.float32)) == pytest.approx(a, rel=1e-4)


def test_independent_and_anticorrelated_series_do_not_exceed_n():
    x = ar1(-0.5, 1, 10_000, seed=4)
    assert ess_first_zero(x) <= x.size
    assert ess_batch_means(x) <= x.size


def test_constant_series_has_zero_ess():
    assert ess_first_zero(np.zeros(100)) == 0.0
    assert ess_batch_means(np.ones((3, 100))) == 0.0


def test_bad_input():
    with pytest.raises(AnalysisInputError, match="NaN"):
        ess_first_zero(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(AnalysisInputError, match="shape"):
        ess_first_zero(np.zeros((2, 3, 4)))
    with pytest.raises(AnalysisInputError, match="unknown ESS method"):
        effective_sample_size(np.zeros(10), "magic")
    with pytest.raises(AnalysisInputError, match="batch size"):
        ess_batch_means(np.random.default_rng(0).standard_normal(10), batch_size=8)
    with pytest.raises(AnalysisInputError, match="stationary"):
        ar1_autocorrelation_time(1.0)


def _two_state_chains(a: float, b: float, n_chains: int, n_steps: int, seed: int) -> np.ndarray:
    """Markov chains on {0, 1} with P(0->1) = a, P(1->0) = b, started from the stationary distribution."""
    rng = np.random.default_rng(seed)
    x = np.empty((n_chains, n_steps))
    x[:, 0] = rng.random(n_chains) < a / (a + b)
    u = rng.random((n_chains, n_steps))
    for t in range(1, n_steps):
        x[:, t] = np.where(x[:, t - 1] == 1, u[:, t] >= b, u[:, t] < a)
    return x


def test_two_state_ess_matches_the_markov_chain_and_the_autocorrelation_estimators():
    """A two-state Markov chain has tau = (2 - a - b)/(a + b) exactly: the count-based estimate recovers it, and
    agrees with the first-zero estimator where that one has enough transitions to work."""
    a, b = 0.002, 0.05  # a rare state: population a/(a+b) ~ 3.8 %
    x = _two_state_chains(a, b, 40, 20_000, seed=5)
    r = ess_two_state(x)
    tau = (2 - a - b) / (a + b)
    assert r["tau"] == pytest.approx(tau, rel=0.1)
    assert r["p01"] == pytest.approx(a, rel=0.1) and r["p10"] == pytest.approx(b, rel=0.1)
    assert r["ess"] == pytest.approx(x.size / tau, rel=0.1) and r["n"] == x.size
    assert ess_first_zero(x) == pytest.approx(r["ess"], rel=0.35)
    # few transitions in many short chains: the count still estimates the rates without bias
    short = _two_state_chains(a, b, 400, 200, seed=6)
    assert ess_two_state(short)["p01"] == pytest.approx(a, rel=0.25)


def test_two_state_ess_without_transitions_and_bad_input():
    assert ess_two_state(np.ones((3, 50)))["ess"] == 0.0 and ess_two_state(np.zeros(9))["tau"] == float("inf")
    r = ess_two_state(np.array([0, 0, 1, 1, 0, 0.0]))
    assert (r["n01"], r["n10"]) == (1, 1) and r["p01"] == pytest.approx(1 / 3) and r["p10"] == pytest.approx(1 / 2)
    with pytest.raises(AnalysisInputError, match="0/1 indicator"):
        ess_two_state(np.array([0.0, 0.5, 1.0]))
