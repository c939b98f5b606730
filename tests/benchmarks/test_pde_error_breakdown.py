"""The per-trajectory error breakdown script's helpers (the diagnostic behind results/sweeps/pde_error_breakdown_*)."""

import importlib

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bd():
    return importlib.import_module("benchmarks.pde_error_breakdown")


def test_breakdown_finds_the_coefficient_that_carries_the_error(bd):
    rng = np.random.default_rng(1)
    cond = np.stack([np.ones(200), rng.uniform(0, 0.4, 200), rng.uniform(0, 1, 200)], axis=1)
    err = 1.0 / (cond[:, 1] + 0.01)  # hard when beta is small
    out = bd.breakdown(err, cond, ("alpha", "beta", "gamma"))
    assert "alpha" not in out["by_coefficient"]  # constant: nothing to correlate
    assert out["by_coefficient"]["beta"]["spearman"] == pytest.approx(-1.0)
    assert abs(out["by_coefficient"]["gamma"]["spearman"]) < 0.3
    q = out["by_coefficient"]["beta"]["quartile_mean_error"]
    assert q == sorted(q, reverse=True)
    assert 0.1 < out["top10pct_share"] < 1.0 and out["mean_without_top10pct"] < out["mean"]
    assert bd.spearman(np.ones(5), np.arange(5.0)) is None


@pytest.mark.parametrize("varying", [True, False])
def test_plot_with_and_without_a_varying_coefficient(bd, tmp_path, varying):
    """E1 fixes every coefficient: the plot then ranks the trajectories instead of failing with no panel."""
    rng = np.random.default_rng(0)
    cond = np.stack([np.ones(20), rng.uniform(0, 0.4, 20) if varying else np.zeros(20), np.zeros(20)], axis=1)
    path = tmp_path / "b.png"
    bd._plot({"fno": rng.uniform(1, 5, 20), "WENO5": rng.uniform(0.1, 1, 20)}, cond, ("alpha", "beta", "gamma"),
             path, "t")
    assert path.stat().st_size > 5000
