"""Comparison metrics: shift-invariant free-energy MSE; the shared JS divergence (compscope.analysis) as cg uses it."""

from __future__ import annotations

import numpy as np
import pytest

from compscope.analysis import js_divergence, ramachandran_histogram, ramachandran_js
from compscope.cg import free_energy_mse


def test_js_divergence_bounds_and_symmetry():
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.0, 0.0, 0.3, 0.7])
    assert js_divergence(p, p) == 0.0
    assert js_divergence(p, q) == pytest.approx(np.log(2))
    r = np.array([0.25, 0.25, 0.25, 0.25])
    assert js_divergence(p, r) == pytest.approx(js_divergence(r, p))


def test_free_energy_mse_is_shift_invariant_in_kcal():
    rng = np.random.default_rng(0)
    p = rng.random((8, 8)) + 0.1
    p /= p.sum()
    assert free_energy_mse(p, p * 3.0) == pytest.approx(0.0, abs=1e-20)  # a constant factor is a free-energy shift
    q = p.copy()
    q[0, 0] *= np.e  # one bin lower by kT
    kT = 0.0019872042586 * 300.0
    d = np.zeros(64)
    d[0] = -kT
    assert free_energy_mse(p, q / q.sum()) == pytest.approx(((d - d.mean()) ** 2).mean())


def test_ramachandran_js_of_samples():
    rng = np.random.default_rng(1)
    a = rng.uniform(-np.pi, np.pi, (2, 200_000))
    b = rng.uniform(-np.pi, np.pi, (2, 200_000))
    assert ramachandran_js(*a, *b, bins=64) < 0.02  # sampling noise only
    assert ramachandran_histogram(*a, bins=61).shape == (61, 61)
    c = np.stack([rng.normal(-1.5, 0.2, 200_000), rng.normal(2.5, 0.2, 200_000)])
    assert ramachandran_js(*a, *c) > 0.4
