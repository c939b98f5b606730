"""Shared fixtures of the sampling tests: the committed 300-frame slices of the DW4/LJ13 test splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sampling"
SHARED_BG = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bg"


@pytest.fixture(scope="session")
def dw4_frames() -> torch.Tensor:
    return torch.as_tensor(np.load(FIXTURES / "dw4_test_300.npy"), dtype=torch.float64).reshape(-1, 4, 2)


@pytest.fixture(scope="session")
def lj13_frames() -> torch.Tensor:
    return torch.as_tensor(np.load(FIXTURES / "lj13_test_300.npy"), dtype=torch.float64).reshape(-1, 13, 3)
