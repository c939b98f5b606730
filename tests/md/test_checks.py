"""The time-step check: limits by the lightest atom, hydrogen limit scaled by its mass."""

import warnings

import numpy as np
import pytest

from compscope.md._checks import check_timestep


def test_hydrogen_limit_and_message():
    with pytest.warns(UserWarning, match="use --dt 0.5"):
        assert check_timestep(2.0, [8, 1, 1]) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_timestep(1.0, [8, 1, 1]) is None
        assert check_timestep(4.0, [8, 6, 6]) is None  # no hydrogen: 5 fs


def test_deuterium_masses_raise_the_limit():
    z, m = np.array([8, 1, 1]), np.array([15.999, 2.014, 2.014])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_timestep(1.4, z, m) is None  # sqrt(2.014 / 1.008) = 1.41 fs
    with pytest.warns(UserWarning, match=r"> 1.41 fs"):
        assert check_timestep(2.0, z, m) is not None
    with pytest.warns(UserWarning):  # the lightest hydrogen decides
        check_timestep(1.4, np.array([8, 1, 1]), np.array([15.999, 2.014, 1.008]))
