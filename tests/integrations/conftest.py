"""Fixtures of the integration tests: the argon systems and Lennard-Jones potential of the MD tests."""

from tests.md.conftest import _float64_default, ar_cluster, ar_crystal, lj  # noqa: F401 - fixtures
