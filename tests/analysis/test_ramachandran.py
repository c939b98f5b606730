"""Ramachandran histograms, JS divergence (checked against scipy), free-energy profiles and their error."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from compscope.analysis import (
    AnalysisInputError,
    free_energy_profile_1d,
    js_divergence,
    profile_error,
    ramachandran_histogram,
    ramachandran_js,
)


def _vonmises(n, mu, kappa, seed):
    rng = np.random.default_rng(seed)
    return rng.vonmises(mu[0], kappa, n), rng.vonmises(mu[1], kappa, n)


@pytest.mark.parametrize("bins", [64, 61])
def test_histogram_on_the_torus(bins):
    phi, psi = _vonmises(20_000, (-1.5, 2.8), 4.0, 0)
    h = ramachandran_histogram(phi + 2 * math.pi, psi, bins=bins)  # wrapped back into [-pi, pi)
    assert h.shape == (bins, bins) and h.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(h, ramachandran_histogram(phi, psi, bins=bins), atol=1e-12)
    i, j = np.unravel_index(h.argmax(), h.shape)
    edges = np.linspace(-math.pi, math.pi, bins + 1)
    assert abs(edges[i] + math.pi / bins - (-1.5)) < 0.3 and abs(edges[j] + math.pi / bins - 2.8) < 0.3


def test_js_divergence_matches_scipy_and_bounds():
    rng = np.random.default_rng(0)
    p, q = rng.random((64, 64)), rng.random((64, 64))
    assert js_divergence(p, q) == pytest.approx(jensenshannon(p.ravel(), q.ravel()) ** 2, rel=1e-10)
    assert js_divergence(p, p) == 0.0
    disjoint = js_divergence([1.0, 0.0], [0.0, 1.0], base=2)
    assert disjoint == pytest.approx(1.0)


def test_js_between_samples_shrinks_with_sample_size():
    ref = _vonmises(200_000, (-1.5, 2.8), 3.0, 1)
    small = _vonmises(2_000, (-1.5, 2.8), 3.0, 2)
    big = _vonmises(100_000, (-1.5, 2.8), 3.0, 3)
    shifted = _vonmises(100_000, (-1.0, 2.8), 3.0, 4)
    js_small, js_big, js_shift = (ramachandran_js(*s, *ref) for s in (small, big, shifted))
    assert js_big < js_small and js_big < 0.01 < js_shift


def test_free_energy_profile_of_a_known_density():
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 1.0, 400_000)
    prof = free_energy_profile_1d(x, bins=40, range=(-3, 3))
    exact = 0.5 * prof["centres"] ** 2
    sel = prof["prob"] > 1e-3
    err = prof["free_energy"][sel] - exact[sel]
    assert np.abs(err - err.mean()).max() < 0.1  # kT, within sampling noise of 4e5 draws
    ref = {**prof, "free_energy": exact - exact.min()}
    e = profile_error(prof, ref)
    assert e["rmse"] < 0.05 and e["max_abs"] < 0.1
    # a constant shift costs nothing; a missed region is infinitely wrong
    assert profile_error({**prof, "free_energy": prof["free_energy"] + 3.0}, prof)["max_abs"] == pytest.approx(0.0)
    half = free_energy_profile_1d(x[x < 0], bins=40, range=(-3, 3))
    assert profile_error(half, prof)["rmse"] == math.inf


def test_periodic_profile_and_weights():
    phi = np.array([-math.pi + 0.01, math.pi - 0.01, 3 * math.pi - 0.01])  # the last one wraps to pi - 0.01
    prof = free_energy_profile_1d(phi, bins=4, periodic=True, weights=[1.0, 2.0, 1.0])
    np.testing.assert_allclose(prof["prob"], [0.25, 0, 0, 0.75])
    assert prof["free_energy"][3] == 0.0 and prof["free_energy"][1] == math.inf


def test_bad_input():
    with pytest.raises(AnalysisInputError, match="same shape|shapes"):
        js_divergence(np.ones(3), np.ones(4))
    with pytest.raises(AnalysisInputError, match="non-finite"):
        ramachandran_histogram([np.nan], [0.0])
    with pytest.raises(AnalysisInputError, match="different bins"):
        profile_error(free_energy_profile_1d([0.0, 1.0], bins=3), free_energy_profile_1d([0.0, 1.0], bins=4))


def test_weighted_metrics_equal_repeated_frames():
    """Integer weights give exactly the histograms, JS and profiles of the frames repeated that many times."""
    phi, psi = _vonmises(3000, (-1.5, 2.8), 2.0, 5)
    phi2, psi2 = _vonmises(3000, (-1.0, 2.0), 1.0, 6)
    k = np.random.default_rng(7).integers(0, 4, phi.size)
    rp, rs = np.repeat(phi, k), np.repeat(psi, k)
    np.testing.assert_allclose(ramachandran_histogram(phi, psi, weights=k), ramachandran_histogram(rp, rs),
                               atol=1e-15)
    assert ramachandran_js(phi, psi, phi2, psi2, weights_a=k) == pytest.approx(ramachandran_js(rp, rs, phi2, psi2),
                                                                                rel=1e-12)
    assert ramachandran_js(phi2, psi2, phi, psi, weights_b=k) == pytest.approx(ramachandran_js(phi2, psi2, rp, rs),
                                                                                rel=1e-12)
    pw = free_energy_profile_1d(phi, bins=64, periodic=True, weights=k)
    pr = free_energy_profile_1d(rp, bins=64, periodic=True)
    np.testing.assert_allclose(pw["prob"], pr["prob"], atol=1e-15)
    ref = free_energy_profile_1d(phi2, bins=64, periodic=True)
    assert profile_error(pw, ref) == pytest.approx(profile_error(pr, ref), rel=1e-12)
