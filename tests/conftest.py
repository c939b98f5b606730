"""Shared fixtures: paths to committed test data and small graph batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# small tensors: one thread avoids oversubscription on shared CPUs; every compscope.runtime call (the CLI's root
# option, compscope.train.fit) reads this. compscope comes before torch, so its OpenMP wait policy applies.
os.environ.setdefault("COMPSCOPE_NUM_THREADS", "1")
# isort: off
from compscope.runtime import configure_threads  # noqa: E402
import torch  # noqa: E402, F401
# isort: on

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

configure_threads()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def ethanol_xyz() -> Path:
    return FIXTURES / "forcefield" / "ethanol_train_60.xyz"
