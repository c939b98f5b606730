"""Fixtures for the generate tests: real QM9 (converted from qm9pack once, cached) and a tiny xyz fixture."""

from pathlib import Path

import pytest

FIXTURE = Path(__file__).parents[1] / "fixtures" / "generate"


@pytest.fixture(scope="session")
def qm9():
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None:  # qm9pack itself needs pkg_resources to import; we only
        pytest.skip("QM9 comes from qm9pack: pip install compscope[generate]")  # read its CSV files
    from compscope.generate import load_qm9

    return load_qm9()


@pytest.fixture(scope="session")
def splits():
    from compscope.generate import edm_splits

    return edm_splits()


@pytest.fixture(scope="session")
def small_molecules():
    from compscope.generate._io import read_molecules

    return read_molecules(FIXTURE / "qm9_first12.xyz")


@pytest.fixture(autouse=True)
def _one_thread():
    """Small graphs: one thread is faster than two and far faster on a shared, loaded machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
