"""TICA through deeptime: the slow component of a two-state switching process is found and its timescale."""

import numpy as np
import pytest

from compscope.analysis import AnalysisInputError, dihedral_features, distance_features, ess_first_zero, fit_tica

pytest.importorskip("deeptime")


def _switching(n, p_switch, seed):
    """Feature 0: fast noise; feature 1: a slow two-state telegraph signal plus noise (mixed into both)."""
    rng = np.random.default_rng(seed)
    s = np.cumsum(rng.random(n) < p_switch) % 2 * 2.0 - 1.0
    fast = rng.standard_normal(n)
    slow = s + 0.3 * rng.standard_normal(n)
    return np.stack([fast + 0.5 * slow, slow - 0.2 * fast], -1), s


def test_tic0_is_the_slow_switch():
    trajs = [_switching(20_000, 0.002, k) for k in range(3)]
    model = fit_tica([f for f, _ in trajs], lagtime=100, dim=2)
    tic = model.transform(trajs[0][0])
    assert tic.shape == (20_000, 2)
    assert abs(np.corrcoef(tic[:, 0], trajs[0][1])[0, 1]) > 0.95
    # a telegraph process flipping with p per step has autocorrelation (1 - 2p)^k; the noise (variance 0.09 beside
    # the switch's 1) scales it by c = 1 / 1.09: implied timescale -lag / log(c (1 - 2p)^lag)
    lam = (1 / 1.09) * (1 - 2 * 0.002) ** 100
    assert model.timescales[0] == pytest.approx(-100 / np.log(lam), rel=0.2)
    assert model.timescales[0] > 5 * model.timescales[1]  # the fast one is at the noise floor of lag 100
    assert ess_first_zero(tic[:, 0]) < ess_first_zero(tic[:, 1])
    # the sign is fixed: a refit on the same data gives the same projection
    np.testing.assert_allclose(fit_tica([f for f, _ in trajs], 100, 2).transform(trajs[0][0]), tic)


def test_features():
    x = np.random.default_rng(0).standard_normal((4, 22, 3))
    f = dihedral_features(x, [(1, 6, 7, 9), (6, 7, 9, 16)])
    assert f.shape == (4, 4)
    np.testing.assert_allclose(f[:, 0] ** 2 + f[:, 1] ** 2, 1.0)
    assert distance_features(x, atoms=[0, 1, 2]).shape == (4, 3)


def test_bad_input():
    with pytest.raises(AnalysisInputError, match="lag"):
        fit_tica(np.zeros((10, 2)), lagtime=10)
    with pytest.raises(AnalysisInputError, match="same number of features"):
        fit_tica([np.zeros((10, 2)), np.zeros((10, 3))], lagtime=1)
