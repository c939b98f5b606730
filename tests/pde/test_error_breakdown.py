"""The per-trajectory error breakdown script's helpers (the diagnostic behind docs/pde.md's E3 analysis)."""

import numpy as np
import pytest

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def bd():
    return load_benchmark("pde_error_breakdown")


def test_per_trajectory_error_matches_the_benchmark_metric(bd):
    from compscope.pde._metrics import accumulated_error

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(6, 250, 50))
    pred = ref + rng.normal(scale=0.1, size=ref.shape)
    err = bd.per_trajectory_error(pred, ref)
    assert err.shape == (6,)
    assert np.isclose(err.mean(), accumulated_error(pred, ref, 50))
    pred[2, 10] += 100.0  # a given step is not scored
    assert np.allclose(bd.per_trajectory_error(pred, ref), err)


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
