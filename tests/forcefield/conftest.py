from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "forcefield"
TRAIN = FIXTURES / "ethanol_train_60.xyz"
TEST = FIXTURES / "ethanol_test_20.xyz"


def tiny_config(out: Path, **over) -> dict:
    cfg = {
        "seed": 0,
        "dtype": "float64",
        "out": str(out),
        "model": {"preset": "tiny", "r_max": 4.0},
        "data": {"train": str(TRAIN), "test": str(TEST), "n_train": 20, "n_valid": 10, "batch_size": 5},
        "task": {"lr": 0.005, "ema_decay": 0.9},
        "trainer": {"max_epochs": 2, "progress_bar": False, "num_threads": 1},
    }
    for section, values in over.items():
        if isinstance(values, dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    return cfg


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained once for the whole session (calculator, export, eval tests)."""
    from compscope.forcefield import fit

    out = tmp_path_factory.mktemp("ff") / "run"
    return fit(tiny_config(out, trainer={"max_epochs": 3}))
