"""Shared fixtures: paths to committed test data and small graph batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(1)  # small tensors: one thread avoids oversubscription on shared CPUs


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def ethanol_xyz() -> Path:
    return FIXTURES / "forcefield" / "ethanol_train_60.xyz"
