"""MBAR reweighting (pymbar) on harmonic oscillators at several temperatures: known free energies and populations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erfc

from compscope.errors import CompscopeError
from compscope.sampling import mbar_expectation, mbar_histogram, mbar_log_weights

pytest.importorskip("pymbar")

TEMPS = np.geomspace(1.0, 4.0, 6)


def _oscillator(n_per_state: int, seed: int, dim: int = 2):
    """x ~ N(0, T_k I) at each temperature; u_k(x) = |x|^2 / (2 T_k); run-major, time order = draw order."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0.0, np.sqrt(t), (n_per_state, dim)) for t in TEMPS])
    state = np.repeat(np.arange(len(TEMPS)), n_per_state)
    perm = rng.permutation(len(x))  # interleave states in "time", as replica exchange does
    x, state = x[perm], state[perm]
    u_kn = (x**2).sum(1)[None, :] / (2.0 * TEMPS[:, None])
    return x, state, u_kn


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mbar_free_energies_and_weights_of_harmonic_oscillators(dtype):
    x, state, u_kn = _oscillator(2000, seed=0)
    log_w, f_k = mbar_log_weights(u_kn.astype(dtype), state)
    # Z_k ∝ T_k^(d/2): f_k - f_0 = -(d/2) log(T_k / T_0), d = 2
    np.testing.assert_allclose(f_k, -np.log(TEMPS / TEMPS[0]), atol=0.03)
    assert np.exp(log_w).sum() == pytest.approx(1.0, abs=1e-10)
    # reweighted second moment at T_0 = 1: <|x|^2> = 2
    assert np.exp(log_w) @ (x**2).sum(1) == pytest.approx(2.0, abs=0.05)


def test_mbar_population_of_a_tail_matches_the_exact_value_with_honest_errors():
    a = 2.5
    exact = 0.5 * erfc(a / np.sqrt(2.0))  # P(x_0 > a) at T = 1 (0.62 %)
    zs, errs = [], []
    for seed in range(4):
        x, state, u_kn = _oscillator(2000, seed=seed)
        run = np.repeat([0, 1], len(x) // 2)
        r = mbar_expectation((x[:, 0] > a).astype(float), u_kn, state, run=run, n_blocks=10)
        zs.append((r["value"] - exact) / r["error_blocks"])
        errs.append(r["error_blocks"])
        assert r["n_blocks"] == 20 and len(r["per_run"]) == 2 and r["error_runs"] > 0
        assert len(x) / len(TEMPS) < r["ess"] < len(x)  # pooled states beat the 300 K-like state alone
    zs = np.asarray(zs)
    assert np.abs(zs).max() < 4.0 and abs(zs.mean()) < 2.0
    # the single-temperature estimate from the 2000 T = 1 samples alone has the binomial error
    assert np.mean(errs) < 0.6 * np.sqrt(exact * (1 - exact) / 2000)


def test_mbar_histogram_recovers_the_cold_density():
    x, state, u_kn = _oscillator(3000, seed=1, dim=1)
    log_w, _ = mbar_log_weights(u_kn, state)
    edges = np.linspace(-3, 3, 13)
    p, se = mbar_histogram(x[:, 0], None, log_w, bins=edges, range_=(-3, 3), run=None, n_blocks=10)
    from scipy.stats import norm

    exact = np.diff(norm.cdf(edges))
    assert np.all(np.abs(p - exact) < 5 * se + 1e-3)
    p2, se2 = mbar_histogram(x[:, 0], x[:, 0], log_w, bins=8, range_=[[-3, 3], [-3, 3]])
    assert p2.shape == (8, 8) and np.trace(p2) == pytest.approx(p.sum(), abs=1e-9)


def test_mbar_bad_input():
    with pytest.raises(CompscopeError, match="K states, N samples"):
        mbar_log_weights(np.zeros((3, 5)), np.zeros(4, dtype=int))
    with pytest.raises(CompscopeError, match="NaN or inf"):
        mbar_log_weights(np.array([[0.0, np.nan]]), np.array([0, 0]))
    with pytest.raises(CompscopeError, match="must lie in"):
        mbar_log_weights(np.zeros((2, 3)), np.array([0, 1, 2]))
